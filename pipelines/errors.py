"""The config's one error, below both the schema (:mod:`pipelines.config`) and the secrets
it names (:mod:`pipelines.secrets`), which raise it alike."""


class ConfigError(Exception):
    """The config file is wrong, or a secret it names gives nothing; the message names the
    key (or the reference) and what is wrong with it."""
