"""`cosfs serve`: an embedded COS-compatible server (trio + h11) for local use and tests.

Modules, each with one job:

- `main`       command line, TLS, startup banner, signals
- `http`       the h11 connection loop (keep-alive, streamed bodies, 100-continue, sendfile)
- `app`        addressing, authentication, anonymous access by ACL, CORS, fault injection,
               dispatch, error XML, access log
- `authn`      q-sign / SigV4 verification (through cosfs.cos.auth)
- `buckets`, `objects`, `multipart`   the COS operations (buckets: also ACL, CORS, GET Service)
- `storage`    file-backed buckets: atomic durable versions, key mapping, index, multipart
               staging, bucket.json (ACL, CORS)
- `responses`  XML documents
- `faults`     the --fault spec and its dice
- `framing`    `frame=` faults: responses written chunked, split, with 100 Continue, closed
- `common`     the error type, the parsed request, shared limits

The COS rules themselves (listing, conditionals, ranges, part checks, append positions,
metadata limits, the code -> status table, ACL and CORS semantics) are not here but in the
pure module `cosfs.cos.rules`, which the in-memory store `cosfs.cos.memory` uses too.
"""
