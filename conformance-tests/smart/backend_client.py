"""SMART Backend Services with SMART's Python `fhirclient`, against a running Carnet.

Usage: backend_client.py SETTINGS_JSON, where the settings are fhirclient's (`app_id`,
`api_base`, `scope`, `jwt_token`: the client assertion, signed by the caller). The library
reads the CapabilityStatement's oauth-uris, asks the token endpoint for a token with the
assertion, then reads with it. Prints one JSON line: what it found and what it read.
"""

import json
import sys

from fhirclient import client


def main():
    settings = json.loads(sys.argv[1])
    smart = client.FHIRClient(settings=settings)
    smart.wants_patient = False
    smart.prepare()
    auth = smart.server.auth
    if auth is None or auth.auth_type != "oauth2":
        sys.exit(f"fhirclient found no OAuth2 endpoints in the CapabilityStatement: {auth}")
    smart.authorize()
    history = smart.server.request_json("Patient/_history")
    print(json.dumps({
        "token_uri": auth._token_uri,
        "ready": smart.ready,
        "read": history.get("resourceType"),
    }))


if __name__ == "__main__":
    main()
