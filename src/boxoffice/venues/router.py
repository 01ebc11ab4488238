"""HTTP routes (placeholder until the feature lands)."""

from fastapi import APIRouter

router = APIRouter()
admin_router = APIRouter(prefix="/admin")
