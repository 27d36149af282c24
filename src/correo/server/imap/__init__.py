"""The IMAP server shell: session, selected-mailbox view, FETCH, LIST."""
