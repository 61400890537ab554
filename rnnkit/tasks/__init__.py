"""Applications, one module each: the model, the data and the loss of one kind of job."""
