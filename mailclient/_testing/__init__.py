"""
The implementation of L{mailclient.testing}: a real, scriptable SMTP server.

Reading order: the L{Action} values a test scripts with (C{actions}), the
records the server keeps (C{records}), the SASL exchanges (C{sasl}) and
command syntax (C{syntax}), the protocol (C{protocol}), the in-memory
transport (C{memory}), the L{SMTPTestServer} factory users configure
(C{server}) and the trial helpers (C{trial}); C{certs} holds the test
certificates.  Its public face is L{mailclient.testing}.
"""
