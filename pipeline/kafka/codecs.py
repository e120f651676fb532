"""faust codecs for our records: orjson for values, UTF-8 text for keys.

faust's own ``json`` codec is slower, and its ``raw`` codec turns ``str`` keys into ``bytes`` after a
table recovery, which would split one key into two.
"""

from __future__ import annotations

from typing import Any

import orjson
from faust.serializers import codecs


class OrjsonCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return orjson.dumps(obj)

    def _loads(self, s: bytes) -> Any:
        return orjson.loads(s)


class TextCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return obj.encode() if isinstance(obj, str) else bytes(obj)

    def _loads(self, s: bytes) -> Any:
        return s.decode()


def register() -> None:
    codecs.register("orjson", OrjsonCodec())
    codecs.register("text", TextCodec())
