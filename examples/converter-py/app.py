"""The example converter in Python: exports neon:cybergrid/converter@0.1.0 with the same fixed
table of rates as the Rust converter (../converter), so the two are interchangeable plugs.

Built into a component by ../build-python.sh with componentize-py; `wit_world` is the module
componentize-py generates from ../../wit/neon-cybergrid (world converter-provider).
"""

import math

from wit_world import exports

# Value of one unit of each currency in euros; fixed so that outputs are reproducible in tests.
RATES = {
    "EUR": 1.0,
    "USD": 0.92,
    "GBP": 1.17,
    "JPY": 0.0062,
    "CHF": 1.05,
    "NCR": 0.25,
}


class Converter(exports.Converter):
    def convert(self, amount: float, from_: str, to: str) -> float | None:
        if not math.isfinite(amount):
            return None
        source = RATES.get(from_.upper())
        target = RATES.get(to.upper())
        if source is None or target is None:
            return None
        return amount * source / target
