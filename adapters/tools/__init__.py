"""The tool catalog and its adapters: one adapter per external system behind a small contract
(base.py), an HTTP/JSON implementation (http.py) and a sandbox twin in the service's database
(sandbox.py), built from config/tools.yaml by registry.build_registry. See docs/adapters.md."""
from .base import (ActionNotGranted, Adapter, AuditSink, CallRecord, DatabaseAuditSink, MemoryAuditSink,
                   NoCompensation, ToolBadResponse, ToolError, ToolMisconfigured, ToolRateLimited, ToolRejected,
                   ToolResult, ToolTimeout, ToolUnavailable, compensation_key, parse_retry_after)

__all__ = ["ActionNotGranted", "Adapter", "AuditSink", "CallRecord", "DatabaseAuditSink", "MemoryAuditSink",
           "NoCompensation", "ToolBadResponse", "ToolError", "ToolMisconfigured", "ToolRateLimited", "ToolRejected",
           "ToolResult", "ToolTimeout", "ToolUnavailable", "compensation_key", "parse_retry_after"]
