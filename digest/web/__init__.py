"""The ASGI app of `digest serve`: one module per audience, each with its own routes.

    app          the app factory, error pages, run_server; mounts every audience's routes
    site         what the audiences share: settings, store, signer, page rendering, form values
    security     CSRF values, the Origin check, the manage link as the session, safe headers
    preferences  a subscriber's preference centre and unsubscribe (one-click included)
    signup       double opt-in sign-up and its confirmation
    webhooks     SendGrid's signed Event Webhook
    archive      the web version of every digest ("View in your browser") and /archive
    editor       the editors' desk (/editor): sign-in, the edition of a day, preview as anyone
    sessions     the desk's signed session cookie and the CSRF value bound to it

A new audience (the editors' desk, ...) is a module with a
`routes(site)` function, added to digest.web.app.AUDIENCES.
"""
