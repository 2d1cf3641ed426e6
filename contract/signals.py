"""What a mail source can measure: declared by each connector, read by the evaluation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Signals:
    """What a source can measure of a mailbox. A signal it cannot is unknown (null) in
    every table and report, never 0, and nothing is confirmed against a person on it.

    The connector declares what its protocol gives; the config adds what is set up around
    it (a login source, ManageSieve, the usage report). Where a server may lack an
    extension (IMAP CONDSTORE, QUOTA) the signal is declared and the night's data says
    whether it came: a null ``read_activity`` is a night it did not.

    >>> Signals(read_activity=True, quota=False, forwarding=True, folder_sizes=True).logins
    False
    """

    read_activity: bool  # flag changes of mail stored on earlier nights
    quota: bool  # used and limit bytes of the mailbox
    forwarding: bool  # forwarding rules to outside addresses
    folder_sizes: bool  # bytes per folder
    logins: bool = False  # only ever from a login source ([[logins]]), never the protocol
    # the users' submissions, from a mail log source ([[mail_logs]]) whose MTA they send
    # through; not in SIGNAL_NAMES: what the log adds is reported beside the Sent folder
    submissions: bool = False

    def unmeasured(self) -> list[str]:
        """The names of the signals this source cannot give, in a fixed order."""
        return [name for name in SIGNAL_NAMES if not getattr(self, name)]


SIGNAL_NAMES = ("read_activity", "logins", "quota", "forwarding", "folder_sizes")
