"""Secrets by reference: the config names an environment variable or a Prefect Secret
block, never a value, and the value is read only when a login needs it.

    >>> ref = SecretRef(env="MAILUSAGE_MASTER_PASSWORD")
    >>> ref
    SecretRef(env='MAILUSAGE_MASTER_PASSWORD', prefect_secret=None, env_prefix=None)
    >>> ref.problem()
    'environment variable MAILUSAGE_MASTER_PASSWORD is not set (it holds a password)'

Prefect is imported only when a Prefect Secret block is resolved.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contract.people import Person
from pipelines.errors import ConfigError

if TYPE_CHECKING:
    from pipelines.config import Config


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives. ``repr`` shows the reference, never the value."""

    env: str | None = None
    prefect_secret: str | None = None
    env_prefix: str | None = None  # per-user: PREFIX + mailbox local part, upper-cased

    def resolve(self, mailbox: str | None = None) -> str:
        if self.env_prefix is not None:
            if mailbox is None:
                raise ConfigError("a per-user password reference needs a mailbox")
            local = re.sub(r"[^A-Za-z0-9]", "_", mailbox.split("@")[0]).upper()
            return _from_env(self.env_prefix + local)
        if self.env is not None:
            return _from_env(self.env)
        if self.prefect_secret is not None:
            from prefect.blocks.system import Secret

            try:
                block: Any = Secret.load(self.prefect_secret)
                value = str(block.get())
            except ValueError as exc:
                raise ConfigError(
                    f"Prefect Secret block {self.prefect_secret!r} not found"
                ) from exc
            if not value:
                raise ConfigError(f"Prefect Secret block {self.prefect_secret!r} is empty")
            return value
        raise ConfigError("secret reference has neither env nor prefect_secret")

    def problem(self, mailbox: str | None = None) -> str | None:
        """Why this reference gives no secret now, or None when it does (the value is
        read and dropped, never shown).

        >>> SecretRef(env="MAILUSAGE_MASTER_PASSWORD").problem()
        'environment variable MAILUSAGE_MASTER_PASSWORD is not set (it holds a password)'
        """
        if not (self.env or self.prefect_secret or self.env_prefix):
            return None  # nothing to resolve (an unencrypted certificate key)
        try:
            self.resolve(mailbox)
        except ConfigError as exc:
            return str(exc)
        except Exception as exc:  # the Prefect API down or refusing: said, not a traceback
            return f"{self.describe()} could not be read: {type(exc).__name__}: {exc}"
        return None

    def describe(self) -> str:
        if not (self.env or self.prefect_secret or self.env_prefix):
            return "none: an unencrypted certificate key, protected by its file's mode"
        if self.env_prefix is not None:
            return f"env {self.env_prefix}<LOCALPART>"
        return f"env {self.env}" if self.env else f"Prefect Secret {self.prefect_secret!r}"


@dataclass(frozen=True)
class SecretProblem:
    """A secret a night needs that resolves to nothing. ``blocking``: no mailbox of the
    source could log in (collect refuses the night); else only the mailboxes named."""

    source: str
    detail: str
    blocking: bool = True

    def __str__(self) -> str:
        return f"source {self.source}: {self.detail}"


def secret_problems(cfg: Config, people: list[Person] | None = None) -> list[SecretProblem]:
    """Every secret reference of the config that gives nothing now, checked before any
    login: a source's password (or Graph client secret / certificate passphrase) and a
    Zimbra admin password. A per-user reference (``env_prefix``) is checked for each roster
    mailbox of its source; it blocks only when none of them is set (the environment lost).

    >>> print(*secret_problems(cfg))
    source dovecot: environment variable MAILUSAGE_MASTER_PASSWORD is not set (it holds a …
    """
    out: list[SecretProblem] = []
    default = cfg.sources[0].name
    for src in cfg.sources:
        refs = [src.password]
        if src.zimbra is not None and src.zimbra.password is not None:
            refs.append(src.zimbra.password)
        for ref in refs:
            if ref.env_prefix is None:
                problem = ref.problem()
                if problem:
                    out.append(SecretProblem(src.name, problem))
                continue
            mine = [p.email for p in people or () if p.email and (p.source or default) == src.name]
            missing = [(m, text) for m in mine if (text := ref.problem(m))]
            if mine and len(missing) == len(mine):
                out.append(
                    SecretProblem(
                        src.name,
                        f"none of the {len(mine)} per-user password variables "
                        f"({ref.describe()}) is set, e.g. {missing[0][1]}",
                    )
                )
            else:
                out += [SecretProblem(src.name, f"{m}: {t}", blocking=False) for m, t in missing]
    return out


MIN_EXPORT_KEY_BYTES = 16  # a shorter key can be guessed, and every pseudonym undone


def export_key(cfg: Config) -> bytes:
    """The key pseudonymised exports are hashed under (``[export] key``), or ConfigError
    saying why there is none: no ``[export]``, the reference unset, a key too short.

    >>> export_key(cfg)
    Traceback (most recent call last):
    pipelines.errors.ConfigError: --pseudonymise needs the hashing key: add [export] key = …
    """
    if cfg.export is None:
        raise ConfigError(
            f'--pseudonymise needs the hashing key: add [export] key = {{ env = "VAR" }} '
            f"to {cfg.path}"
        )
    ref = cfg.export.key
    problem = ref.problem()
    if problem:
        raise ConfigError(f"export.key: {problem.replace('a password', 'the export key')}")
    key = ref.resolve().encode("utf-8")
    if len(key) < MIN_EXPORT_KEY_BYTES:
        raise ConfigError(
            f"export.key ({ref.describe()}) is shorter than {MIN_EXPORT_KEY_BYTES} bytes: a "
            "short key can be guessed and every pseudonym undone"
        )
    return key


def _from_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"environment variable {name} is not set (it holds a password)")
    return value
