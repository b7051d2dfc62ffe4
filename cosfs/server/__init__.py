"""`cosfs serve`: an embedded COS-compatible server (trio + h11) for local use and tests.

Modules, each with one job:

- `main`       command line, startup banner, signals
- `http`       the h11 connection loop (keep-alive, streamed bodies, 100-continue, sendfile)
- `app`        addressing, authentication, fault injection, dispatch, error XML, access log
- `authn`      q-sign / SigV4 verification (through cosfs.cos.auth)
- `buckets`, `objects`, `multipart`   the COS operations
- `storage`    file-backed buckets: atomic versions, key mapping, index, multipart staging
- `responses`  XML documents
- `faults`     the --fault spec and its dice
- `common`     the error type, the parsed request, shared limits
"""
