"""Pricing as code: the catalog's schema, loading and validation (SPEC section 3)."""

from orchestration.catalog.loader import (
    CatalogError,
    CatalogIssue,
    load_catalog,
    load_catalog_cached,
)
from orchestration.catalog.models import Catalog

__all__ = ["Catalog", "CatalogError", "CatalogIssue", "load_catalog", "load_catalog_cached"]
