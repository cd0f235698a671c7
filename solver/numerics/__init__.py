"""One monodomain simulation on MPI + PETSc: the voxel anatomy and its
partition over ranks, the anisotropic diffusion operator, the time steppers,
the ionic models, stimuli, recorders, the time loop and the simulation file.
Imports nothing from the synthetic patient (solver.patient) built on it."""
