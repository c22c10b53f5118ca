"""The one error type the simulation engine raises at run time."""


class SimulationError(RuntimeError):
    """The simulation reached a non-finite state; the message names the step and the replicas."""
