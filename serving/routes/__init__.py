"""Routes grouped by resource; `ROUTERS` is the list the app includes, in order."""

from serving.routes import admin, complaints, content, guardians, health, recommendations, transparency, users

ROUTERS = [
    recommendations.router,
    users.router,
    guardians.router,
    complaints.router,
    transparency.router,
    content.router,
    admin.router,
    health.router,
]
