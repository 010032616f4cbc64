"""/docs: the OpenAPI description (/openapi.json) rendered by Swagger UI, a Blueprint.

The page and its assets come from the `swagger-ui-bundle` package (Swagger UI's own release files),
served by the app itself: no CDN, so it works offline and behind a firewall. `DOCS_PAGE=false`
leaves the routes out. With API keys on, the page and its assets are open (a browser cannot send a
key to load a page); its "Try it out" calls need a key like any other call.
"""
from flask import Blueprint, Response, current_app, send_from_directory

docs_page = Blueprint("docs_page", __name__)
ASSETS = "/docs/assets/"
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>bert-in-a-flask API</title>
  <link rel="stylesheet" href="%(assets)sswagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="%(assets)sswagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
  </script>
</body>
</html>
"""


def assets_folder():
    from swagger_ui_bundle import swagger_ui_path
    return str(swagger_ui_path)


@docs_page.route("/docs", methods=["GET"])
def page():
    return Response(PAGE % {"assets": ASSETS}, mimetype="text/html")


@docs_page.route(ASSETS + "<path:name>", methods=["GET"])
def asset(name):
    return send_from_directory(current_app.extensions["docs_assets"], name)


def init_app(app):
    """Register /docs when DOCS_PAGE is on (and swagger-ui-bundle is installed, else one line says so)."""
    if not app.config["DOCS_PAGE"]:
        return
    try:
        app.extensions["docs_assets"] = assets_folder()
    except ImportError:
        app.logger.warning("DOCS_PAGE is on but swagger-ui-bundle is not installed: no /docs page")
        return
    app.register_blueprint(docs_page)
