"""Small flat OpenDocument files (fodt, fods, fodp) the tests write themselves."""

from __future__ import annotations

from xml.sax.saxutils import escape

_NS = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
       'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
       'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
       'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
       'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
       'xmlns:xlink="http://www.w3.org/1999/xlink" '
       'xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0"')


def flat_odf(kind: str, phrase: str, extra_body: str = "",
             complex_language: tuple[str, str] | None = None) -> bytes:
    """A flat ODF document of kind fodt/fods/fodp whose only text is phrase.

    complex_language=("ar", "SA") marks a fodt paragraph as right-to-left or Indic text in
    that language, as word processors do for text typed in it.
    """
    text = escape(phrase)
    styles = ""
    if kind == "fodt":
        paragraph = "<text:p>"
        if complex_language:
            language, country = complex_language
            styles = ('<office:automatic-styles><style:style style:name="P1" '
                      'style:family="paragraph"><style:text-properties '
                      f'style:language-complex="{language}" style:country-complex="{country}"/>'
                      "</style:style></office:automatic-styles>")
            paragraph = '<text:p text:style-name="P1">'
        mimetype = "text"
        body = f"<office:text>{paragraph}{text}</text:p>{extra_body}</office:text>"
    elif kind == "fods":
        mimetype = "spreadsheet"
        body = ("<office:spreadsheet><table:table table:name=\"Sheet1\"><table:table-row>"
                f"<table:table-cell office:value-type=\"string\"><text:p>{text}</text:p>"
                f"</table:table-cell></table:table-row></table:table>{extra_body}"
                "</office:spreadsheet>")
    elif kind == "fodp":
        mimetype = "presentation"
        body = ("<office:presentation><draw:page draw:name=\"p1\"><draw:frame svg:x=\"2cm\" "
                "svg:y=\"2cm\" svg:width=\"20cm\" svg:height=\"4cm\"><draw:text-box>"
                f"<text:p>{text}</text:p></draw:text-box></draw:frame>{extra_body}</draw:page>"
                "</office:presentation>")
    else:
        raise ValueError(kind)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<office:document {_NS} office:version="1.2" '
            f'office:mimetype="application/vnd.oasis.opendocument.{mimetype}">'
            f"{styles}<office:body>{body}</office:body></office:document>\n").encode()
