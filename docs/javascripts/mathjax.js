// MathJax 3 set-up shared by the Markdown pages (pymdownx.arithmatex writes
// \( \) and \[ \]) and the executed tutorials (Jupyter Markdown writes $ and $$).
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    // Never typeset inside code: a $ in a shell line is not math.
    skipHtmlTags: ["script", "noscript", "style", "textarea", "pre", "code"],
  },
};

// Material's instant navigation swaps pages without a reload: typeset again.
if (typeof document$ !== "undefined") {
  document$.subscribe(() => {
    if (window.MathJax && MathJax.typesetPromise) {
      MathJax.startup.output.clearCache();
      MathJax.typesetClear();
      MathJax.texReset();
      MathJax.typesetPromise();
    }
  });
}
