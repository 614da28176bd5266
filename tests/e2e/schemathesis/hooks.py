"""Schemathesis hooks for the HTTP API test (tests/e2e/openapi.rs).

An object's body is opaque bytes, and its Content-Type is whatever label the client stored with
it (`PUT` takes any). The fuzzer stores binary bodies under labels such as `application/yaml`
or `application/json`, and a later download answers with that label: Schemathesis would then
try to parse the bytes as YAML or JSON and report a deserialization failure that is not the
server's. For downloads of an object (and only those), the body is left unparsed, as
Schemathesis does for media types it has no parser for; every other answer (errors are JSON) is
parsed and checked as before.
"""

from schemathesis.core import deserialization

# Operations whose successful answer is an object's stored bytes.
OBJECT_READS = {("GET", "/v1/objects/{name}/{path}"), ("GET", "/v1/signed/{name}/{path}")}


def _opaque_for_object_reads(original):
    def deserialize(ctx, response):
        operation = ctx.operation
        if (operation.method.upper(), operation.path) in OBJECT_READS and 200 <= response.status_code < 300:
            raise NotImplementedError("an object's body is opaque bytes under the client's label")
        return original(ctx, response)

    return deserialize


for _media_type, _original in list(deserialization._DESERIALIZERS.items()):
    deserialization._DESERIALIZERS[_media_type] = _opaque_for_object_reads(_original)
