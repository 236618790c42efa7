// MathJax 3 set-up shared by the Markdown pages (pymdownx.arithmatex writes
// \( \) and \[ \]) and the executed tutorials (Jupyter Markdown writes $ and $$).
// MathJax itself is served with the site (javascripts/mathjax/tex-svg.js, MathJax
// 3.2.2 from the npm registry's `mathjax` package, Apache-2.0, its LICENSE beside
// it), so the formulas render offline too. The SVG output needs no font files.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
  svg: {
    fontCache: "global",
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
