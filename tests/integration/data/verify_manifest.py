"""Verifies a COSE_Sign1 manifest with pycose, a COSE library independent of Rocky's.

Usage: verify_manifest.py PUBLIC_KEY_HEX < manifest.cbor
PUBLIC_KEY_HEX is Ed25519's 32 bytes or P-256's 65-byte uncompressed point. Prints the verified
payload's fields as JSON and exits 0, or says why and exits 1.
"""
import json
import sys

import cbor2
from pycose.keys import EC2Key, OKPKey
from pycose.keys.curves import P256, Ed25519
from pycose.messages import CoseMessage, Sign1Message


def main() -> int:
    public = bytes.fromhex(sys.argv[1])
    message = CoseMessage.decode(sys.stdin.buffer.read())
    if not isinstance(message, Sign1Message):
        print("not a COSE_Sign1", file=sys.stderr)
        return 1
    if len(public) == 32:
        message.key = OKPKey(crv=Ed25519, x=public)
    else:
        message.key = EC2Key(crv=P256, x=public[1:33], y=public[33:65])
    if not message.verify_signature():
        print("signature does not verify", file=sys.stderr)
        return 1
    payload = cbor2.loads(message.payload)
    print(json.dumps({
        "sha256": payload[1].hex(),
        "size": payload[2],
        "version": payload.get(3),
        "seq": payload.get(4, 0),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
