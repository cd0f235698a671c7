"""Diffusion half of the operator splitting: explicit and implicit schemes.

Each step of the monodomain solver first advances the membrane models by dt
(reaction), then solves dV/dt = A V over the same dt (diffusion) with one of:

* forward Euler: V += dt A V; cheapest, stable for dt below the limit
  checked before the run;
* theta-scheme with a PETSc KSP: (I - theta dt A) V' = (I + (1 - theta) dt A) V,
  theta = 1/2 (Crank–Nicolson) or 1 (backward Euler); unconditionally stable.
  CG with a Jacobi preconditioner when A is symmetric (fibres along grid
  axes), GMRES otherwise; Jacobi keeps results independent of the rank count.
"""
from __future__ import annotations

from petsc4py import PETSc

from .conduction import DiffusionOperator
from ..common.errors import ConfigError, SolverError


class ExplicitDiffusion:
    def __init__(self, operator: DiffusionOperator, dt: float):
        if dt > operator.explicit_dt_limit:
            raise ConfigError(
                f"time.dt_ms {dt} exceeds the explicit diffusion stability limit "
                f"{operator.explicit_dt_limit:.4g} ms for this grid and these conductivities; "
                f"use dt_ms <= {operator.explicit_dt_limit:.4g} or set time.diffusion to "
                f"'crank-nicolson' (or 'auto')"
            )
        self.matrix = operator.matrix
        self.dt = dt
        self.rate = self.matrix.createVecLeft()  # A V, the diffusion current

    def step(self, v: PETSc.Vec) -> None:
        self.matrix.mult(v, self.rate)
        v.axpy(self.dt, self.rate)

    def destroy(self) -> None:
        """Free the PETSc objects this stepper made (not the operator it was given)."""
        self.rate.destroy()


class ThetaDiffusion:
    def __init__(self, operator: DiffusionOperator, dt: float, theta: float, rtol: float):
        a = operator.matrix
        self.matrix, self.dt, self.theta = a, dt, theta
        lhs = a.copy()
        lhs.scale(-theta * dt)
        lhs.shift(1.0)
        symmetric = a.isSymmetric(1e-12)
        self.ksp = PETSc.KSP().create(comm=a.getComm())
        self.ksp.setOptionsPrefix("diffusion_")  # e.g. PETSC_OPTIONS="-diffusion_ksp_monitor"
        self.lhs = lhs
        self.ksp.setOperators(lhs)
        self.ksp.setType("cg" if symmetric else "gmres")
        self.ksp.getPC().setType("jacobi")
        self.ksp.setTolerances(rtol=rtol, atol=1e-50, max_it=10_000)
        self.ksp.setInitialGuessNonzero(True)
        self.ksp.setFromOptions()
        self.rate = a.createVecLeft()
        self.rhs = a.createVecLeft()

    def step(self, v: PETSc.Vec) -> None:
        self.matrix.mult(v, self.rate)
        v.copy(self.rhs)
        self.rhs.axpy((1.0 - self.theta) * self.dt, self.rate)
        self.ksp.solve(self.rhs, v)
        reason = self.ksp.getConvergedReason()
        if reason < 0:
            raise SolverError(
                f"the implicit diffusion solve diverged (PETSc reason {reason}); "
                "reduce time.dt_ms or loosen time.linear_solver_rtol"
            )

    def destroy(self) -> None:
        """Free the PETSc objects this stepper made (not the operator it was given)."""
        for obj in (self.ksp, self.lhs, self.rate, self.rhs):
            obj.destroy()


def make_diffusion_stepper(operator: DiffusionOperator, scheme: str, dt: float, rtol: float):
    """The stepper for ``scheme`` (``auto`` picks explicit when it is stable)."""
    if scheme == "auto":
        scheme = "explicit" if dt <= operator.explicit_dt_limit else "crank-nicolson"
    if scheme == "explicit":
        return ExplicitDiffusion(operator, dt)
    if scheme == "crank-nicolson":
        return ThetaDiffusion(operator, dt, 0.5, rtol)
    if scheme == "backward-euler":
        return ThetaDiffusion(operator, dt, 1.0, rtol)
    raise ConfigError(f"unknown diffusion scheme {scheme!r}")
