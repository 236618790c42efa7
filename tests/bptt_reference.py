"""Backpropagation through time derived by hand, in NumPy float64.

Each function runs the forward pass of one cell over a sequence, keeping
every intermediate, then walks back in time inverting each forward
operation in reverse order (the recipe of the lecture notes' LSTM backward
pass). The loss is L = sum_t sum(w_t * y_t) for given output weights
w: [B, T, H], so dL/dy_t = w_t.

Returns a dict of gradients keyed by the parameter field names, plus "x"
(dL/dxs, [B, T, I]) and "h0" (dL/dh_0). No JAX is used here: this is the
independent reference that autodiff through `lstmjax.unroll` must match.
"""

import numpy as np


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def rnn_bptt(p, xs, w):
    B, T, _ = xs.shape
    H = p["w_h"].shape[0]
    hs = [np.zeros((B, H))]
    for t in range(T):
        hs.append(np.tanh(xs[:, t] @ p["w_x"] + hs[-1] @ p["w_h"] + p["b"]))
    g = {k: np.zeros_like(v) for k, v in p.items()}
    dx = np.zeros_like(xs)
    dh_next = np.zeros((B, H))
    for t in reversed(range(T)):
        dh = w[:, t] + dh_next
        da = dh * (1.0 - hs[t + 1] ** 2)
        g["w_x"] += xs[:, t].T @ da
        g["w_h"] += hs[t].T @ da
        g["b"] += da.sum(0)
        dx[:, t] = da @ p["w_x"].T
        dh_next = da @ p["w_h"].T
    return {**g, "x": dx, "h0": dh_next}


def lstm_bptt(p, xs, w, peephole=False):
    B, T, _ = xs.shape
    H = p["w_h"].shape[0]
    pi, pf, po = p["peephole"] if peephole else np.zeros((3, H))
    h, c = np.zeros((B, H)), np.zeros((B, H))
    cache = []
    for t in range(T):
        z = xs[:, t] @ p["w_x"] + h @ p["w_h"] + p["b"]
        zi, zf, zg, zo = np.split(z, 4, axis=1)
        i, f, g = sigmoid(zi + pi * c), sigmoid(zf + pf * c), np.tanh(zg)
        c_new = f * c + i * g
        o = sigmoid(zo + po * c_new)
        tc = np.tanh(c_new)
        cache.append((h, c, i, f, g, o, c_new, tc))
        h, c = o * tc, c_new
    grads = {k: np.zeros_like(v) for k, v in p.items() if v is not None}
    dx = np.zeros_like(xs)
    dh_next, dc_next = np.zeros((B, H)), np.zeros((B, H))
    for t in reversed(range(T)):
        h_prev, c_prev, i, f, g, o, c_new, tc = cache[t]
        dh = w[:, t] + dh_next
        dzo = dh * tc * o * (1.0 - o)  # h = o * tanh(c)
        dc = dc_next + dh * o * (1.0 - tc**2) + dzo * po  # through tanh(c) and the o-peephole
        dzf = dc * c_prev * f * (1.0 - f)  # c = f * c_prev + i * g
        dzi = dc * g * i * (1.0 - i)
        dzg = dc * i * (1.0 - g**2)
        dc_next = dc * f + dzi * pi + dzf * pf
        dz = np.concatenate([dzi, dzf, dzg, dzo], axis=1)
        grads["w_x"] += xs[:, t].T @ dz
        grads["w_h"] += h_prev.T @ dz
        grads["b"] += dz.sum(0)
        if peephole:
            grads["peephole"] += np.stack(
                [(dzi * c_prev).sum(0), (dzf * c_prev).sum(0), (dzo * c_new).sum(0)]
            )
        dx[:, t] = dz @ p["w_x"].T
        dh_next = dz @ p["w_h"].T
    return {**grads, "x": dx, "h0": dh_next, "c0": dc_next}


def gru_bptt(p, xs, w, reset_after=True):
    B, T, _ = xs.shape
    H = p["w_h"].shape[0]
    w_hrz, w_hn = p["w_h"][:, : 2 * H], p["w_h"][:, 2 * H :]
    h = np.zeros((B, H))
    cache = []
    for t in range(T):
        xr, xz, xn = np.split(xs[:, t] @ p["w_x"] + p["b"], 3, axis=1)
        hr, hz = np.split(h @ w_hrz, 2, axis=1)
        r, z = sigmoid(xr + hr), sigmoid(xz + hz)
        if reset_after:
            inner = h @ w_hn + p["b_hn"]  # W_hn h + b_hn, scaled by r
            n = np.tanh(xn + r * inner)
        else:
            inner = r * h  # the reset state fed to W_hn
            n = np.tanh(xn + inner @ w_hn)
        cache.append((h, r, z, n, inner))
        h = z * h + (1.0 - z) * n
    grads = {k: np.zeros_like(v) for k, v in p.items() if v is not None}
    dx = np.zeros_like(xs)
    dh_next = np.zeros((B, H))
    for t in reversed(range(T)):
        h_prev, r, z, n, inner = cache[t]
        dh = w[:, t] + dh_next
        daz = dh * (h_prev - n) * z * (1.0 - z)  # h = z h_prev + (1 - z) n
        dan = dh * (1.0 - z) * (1.0 - n**2)
        dh_prev = dh * z
        if reset_after:
            dar = dan * inner * r * (1.0 - r)
            dinner = dan * r
            grads["b_hn"] += dinner.sum(0)
            grads["w_h"][:, 2 * H :] += h_prev.T @ dinner
            dh_prev += dinner @ w_hn.T
        else:
            drh = dan @ w_hn.T
            grads["w_h"][:, 2 * H :] += inner.T @ dan
            dar = drh * h_prev * r * (1.0 - r)
            dh_prev += drh * r
        drz = np.concatenate([dar, daz], axis=1)
        grads["w_h"][:, : 2 * H] += h_prev.T @ drz
        dh_prev += drz @ w_hrz.T
        dpx = np.concatenate([dar, daz, dan], axis=1)
        grads["w_x"] += xs[:, t].T @ dpx
        grads["b"] += dpx.sum(0)
        dx[:, t] = dpx @ p["w_x"].T
        dh_next = dh_prev
    return {**grads, "x": dx, "h0": dh_next}
