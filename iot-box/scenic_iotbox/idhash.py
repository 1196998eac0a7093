"""Gate hashes of ID numbers read at this box.

The box never holds a key of the ERP: enrolment and every sync bring the
area's live generations (scrypt parameters and a per-area pepper, current
first), and the ERP sends each real-name ticket with its holder's gate
hash under the current one (iot-box/PROTOCOL.md, "Threat model"). A read
ID number costs one scrypt (about 40 ms of CPU) per candidate document
type and generation: ``scenic_common.protocol.gate_hashes``.
"""
from scenic_common import protocol

__all__ = ['candidate_hashes', 'binding_ref', 'ref_generation']


def candidate_hashes(generation, number, id_type=None):
    """Gate hashes of a read number under one generation: under
    ``id_type`` when the reader knows it, else under every document type
    the number is valid for. Invalid numbers give []."""
    return protocol.gate_hashes(generation, number, id_type)


def binding_ref(generation, gate_hash):
    "The ID-card binding reference of a multi-entry ticket or card."
    return f'id:g{generation["generation"]}:{gate_hash}'


def ref_generation(ref):
    """The generation number an ID-card binding reference was made under
    (None when it is not one)."""
    if not isinstance(ref, str) or not ref.startswith('id:g'):
        return None
    number, _, rest = ref[4:].partition(':')
    return int(number) if number.isdigit() and rest else None
