"""The victim side: the black box an attacker queries, the owner's defences of its answers and
detectors of its query streams, the wire format and HTTP client of a served victim, and the
training of a world's victim."""
from .blackbox import OUTPUT_MODES, BlackBox, VictimOutputError
from .defences import Defence, parse_defence
from .detectors import PRADA, Detector, parse_detector

__all__ = ["BlackBox", "VictimOutputError", "OUTPUT_MODES", "Defence", "parse_defence", "Detector", "PRADA",
           "parse_detector"]
