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
- `request_rules`  pure: conditionals, ranges, the metadata directive, the Complete and
               Delete XML bodies, List Multipart Uploads paging
- `acl`        pure: the Acl value, x-cos-acl / x-cos-grant-* headers, AccessControlPolicy
               XML, anonymous access
- `cors`       pure: CORSConfiguration XML, rule matching, preflight and response headers

The COS rules the in-memory store `cosfs.cos.memory` follows too (listing, part checks,
append positions, metadata limits, storage classes, canned ACL names, the code -> status
table) are not here but in the pure module `cosfs.cos.rules`; the pure modules above hold
the rules only the server applies, and `cosfs.cos.memory` imports nothing from this package.
"""
