"""What every layer of ecgi shares, with no MPI or PETSc: the error types,
typed configuration, atomic files, the names of sites and leads, the reading
of traces and the training data set's format."""
