"""One module per protocol behind the MailboxSource interface of connectors.base."""
