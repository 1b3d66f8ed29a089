"""Published protocol documentation generated from the server's own protocol types:
Markdown, JSON Schema, AsyncAPI, OpenAPI and a static HTML site (`python -m protocol_spec`)."""
