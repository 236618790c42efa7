"""One step of an ODE integrator: explicit Euler and classical Runge-Kutta 4.

Ground floor: imports nothing from lstmjax but the type aliases. The continuous-time RNN steps
its vector field with these (`_ctrnn.py`), and the tasks integrate their
dynamical systems with `rk4_step` (`lstmjax.tasks.rk4`).

Every step has the signature `step(f, t, y, dt) -> y'`, with `f(t, y) -> dy/dt`
of the same shape as `y`.
"""

from __future__ import annotations

from collections.abc import Callable

from lstmjax._typing import Array

VectorField = Callable[[Array, Array], Array]  # f(t, y) -> dy/dt, same shape as y


def euler_step(f: VectorField, t: Array, y: Array, dt) -> Array:
    """One step of the explicit Euler method: `y' = y + dt f(t, y)`.

    The local error is O(dt^2), the global error after a fixed time O(dt).
    """
    return y + dt * f(t, y)


def rk4_step(f: VectorField, t: Array, y: Array, dt) -> Array:
    """One step of the classical fourth-order Runge-Kutta method.

        k1 = f(t, y)
        k2 = f(t + dt/2, y + dt/2 k1)
        k3 = f(t + dt/2, y + dt/2 k2)
        k4 = f(t + dt, y + dt k3)
        y' = y + dt/6 (k1 + 2 k2 + 2 k3 + k4)

    The local error is O(dt^5), the global error after a fixed time O(dt^4).
    """
    half = dt / 2
    k1 = f(t, y)
    k2 = f(t + half, y + half * k1)
    k3 = f(t + half, y + half * k2)
    k4 = f(t + dt, y + dt * k3)
    return y + (dt / 6) * (k1 + 2 * k2 + 2 * k3 + k4)


# The integrators by the name a factory option gives them (the CT-RNN's `integrator=`).
STEPS: dict[str, Callable[[VectorField, Array, Array, Array], Array]] = {
    "euler": euler_step,
    "rk4": rk4_step,
}
