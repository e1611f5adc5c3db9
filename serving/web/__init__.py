"""Pages for people (Art. 7, Art. 11, Art. 14 (draft 13), Art. 16 (draft 14), Art. 17 (draft 15), Art. 18 (draft 16), Art. 22 (draft 26)): the operator console (`/console`) and the
privacy center (`/me`), server-rendered with Jinja2, bilingual (Chinese / English), no scripts.

Every action a page offers calls the same function its JSON route calls (serving/routes/), so a
page adds no second path for a rule; the pages add only sessions (signed cookies), CSRF checks on
every form and the HTML. `ROUTERS` is what the app includes; `STATIC_DIR` is mounted at /static.
"""

from pathlib import Path

from serving.web import console, me

ROUTERS = [console.router, me.router]
STATIC_DIR = Path(__file__).with_name("static")
