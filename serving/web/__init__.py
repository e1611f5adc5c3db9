"""Pages for people (Art. 7, 11, 13, 14, 15, 16, 26): the operator console (`/console`) and the
privacy center (`/me`), server-rendered with Jinja2, bilingual (Chinese / English), no scripts.

Every action a page offers calls the same function its JSON route calls (serving/routes/), so a
page adds no second path for a rule; the pages add only sessions (signed cookies), CSRF checks on
every form and the HTML. `ROUTERS` is what the app includes; `STATIC_DIR` is mounted at /static.
"""

from pathlib import Path

from serving.web import console, me

ROUTERS = [console.router, me.router]
STATIC_DIR = Path(__file__).with_name("static")
