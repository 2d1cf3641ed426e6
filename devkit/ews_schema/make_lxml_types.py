"""Derive types.lxml.xsd from the verbatim Microsoft types.xsd.

libxml2 (lxml) rejects the original ArrayOfTransitionsType as a non-deterministic
content model (Unique Particle Attribution): t:AbsoluteDateTransition,
t:RecurringDayTransition and t:RecurringDateTransition are all in the
substitution group of t:Transition, which is also listed in the same sequence.
We replace the sequence with a single ref to the head element t:Transition,
which accepts the same elements (in any order, a superset of the original).
Run: python make_lxml_types.py   (writes types.lxml.xsd next to this file)
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
OLD = """            <xs:element ref="t:AbsoluteDateTransition" minOccurs="0" maxOccurs="unbounded" />
            <xs:element ref="t:RecurringDayTransition" minOccurs="0" maxOccurs="unbounded" />
            <xs:element ref="t:RecurringDateTransition" minOccurs="0" maxOccurs="unbounded" />
            <xs:element ref="t:Transition" minOccurs="0" maxOccurs="unbounded" />"""
NEW = """            <!-- lxml patch: original listed AbsoluteDateTransition, RecurringDayTransition,
                 RecurringDateTransition then Transition (UPA violation). -->
            <xs:element ref="t:Transition" minOccurs="0" maxOccurs="unbounded" />"""


def main() -> None:
    src = (HERE / "types.xsd").read_bytes().decode("utf-8-sig")
    assert src.count(OLD) == 1, "ArrayOfTransitionsType block not found exactly once"
    (HERE / "types.lxml.xsd").write_text(src.replace(OLD, NEW), encoding="utf-8")


if __name__ == "__main__":
    main()
