"""Currencies a customer can be billed in, with their minor units (ISO 4217). Reference data."""

from __future__ import annotations

# ISO 4217 List One: every active currency a customer can be billed in, with its minor-unit
# exponent. The one table for both questions, "is this a currency?" (catalog validation) and
# "how many decimals?" (rounding, Stripe's integers), so they can never disagree. Left out:
# withdrawn codes (HRK, CUC, SLL, ZWL, ...) and the units without a minor unit (XAU, XDR, XTS,
# XXX, ...), which nothing can be invoiced in. ANG and BGN stay while they are being replaced
# (by XCG and EUR): a catalog still billing in them must keep loading.
_LIST_ONE = """
0: BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF
2: AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN
2: BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB
2: EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS
2: KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN
2: MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD
2: SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS
2: UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG
3: BHD IQD JOD KWD LYD OMR TND
4: CLF UYW
"""
ISO_4217_EXPONENTS: dict[str, int] = {
    code: int(exponent)
    for exponent, codes in (line.split(":") for line in _LIST_ONE.strip().splitlines())
    for code in codes.split()
}


def is_currency(code: str) -> bool:
    """An active ISO 4217 code, exactly as written (three capital letters)."""
    return code in ISO_4217_EXPONENTS


def minor_exponent(currency: str) -> int:
    """Digits after the decimal point in `currency`, from ISO 4217.

    The catalog only admits codes of the table; 2 for anything else keeps a report on a
    damaged invoice (no currency at all) readable instead of failing on it."""
    return ISO_4217_EXPONENTS.get(currency.upper(), 2)
