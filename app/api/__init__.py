"""HTTP API (FastAPI). Routes call services; `HTTPException` and envelopes live only here."""
