"""Health check of an HTTP service in the image: exit 0 when URL answers 2xx within 5 s, else 1.

python /opt/mlops/healthcheck.py http://127.0.0.1:3000/server_info
"""

import sys
import urllib.request

try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
        sys.exit(0 if 200 <= response.status < 300 else 1)
except Exception as exc:  # any failure is "unhealthy"; say which
    print(f"{sys.argv[1]}: {exc}", file=sys.stderr)
    sys.exit(1)
