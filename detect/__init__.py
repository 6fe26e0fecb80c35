"""What is in a frame and whether it breaks a rule: the detector adapter, tracking, rules, incidents
and evidence (the runtime), and the model workshop in detect.model."""


class SetupError(Exception):
    """A setup a user gave that cannot be used: a site config, model weights, a dataset recipe, a
    training run. The message names the file or option.

    The base of detect's user errors (ConfigError, ModelError, ExportError and the workshop's). Not a
    ValueError: whoever shows these to a user catches them by name, and a bug's ValueError is never
    mistaken for a bad setup. Bad footage and GPS tracks are streams.InputError.
    """
