"""The hardened LibreOffice user profile every engine instance starts from.

The service writes registrymodifications.xcu itself instead of trusting
LibreOffice's defaults, because those defaults ask the (absent) user before
updating links and fetch remote content on load.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

# A TCP port nothing listens on: LibreOffice's own HTTP(S) traffic is sent to a
# proxy that refuses every connection, so a document cannot reach the network even
# if a filter ignores the settings below.
DEAD_PROXY_HOST = "127.0.0.1"
DEAD_PROXY_PORT = 9

# (path, property, xsd type, value)
HARDENING: tuple[tuple[str, str, str, str], ...] = (
    # Macros never run, whatever the document or its signature says.
    ("/org.openoffice.Office.Common/Security/Scripting", "MacroSecurityLevel", "int", "3"),
    ("/org.openoffice.Office.Common/Security/Scripting", "DisableMacrosExecution",
     "boolean", "true"),
    # Linked images and objects from outside the document are not fetched.
    ("/org.openoffice.Office.Common/Security/Scripting", "BlockUntrustedRefererLinks",
     "boolean", "true"),
    # Writer: never update links, fields or charts on load (linkenum NEVER = 0).
    ("/org.openoffice.Office.Writer/Content/Update", "Link", "int", "0"),
    ("/org.openoffice.Office.Writer/Content/Update", "Field", "boolean", "false"),
    ("/org.openoffice.Office.Writer/Content/Update", "Chart", "boolean", "false"),
    # Calc: never update links (ScLkUpdMode LM_NEVER = 1) and never recalculate on
    # load, so WEBSERVICE() and friends keep their cached values instead of running.
    ("/org.openoffice.Office.Calc/Content/Update", "Link", "int", "1"),
    ("/org.openoffice.Office.Calc/Formula/Load", "OOXMLRecalcMode", "int", "1"),
    ("/org.openoffice.Office.Calc/Formula/Load", "ODFRecalcMode", "int", "1"),
    # All of LibreOffice's own internet access goes to a proxy that does not exist.
    ("/org.openoffice.Inet/Settings", "ooInetProxyType", "int", "1"),
    ("/org.openoffice.Inet/Settings", "ooInetHTTPProxyName", "string", DEAD_PROXY_HOST),
    ("/org.openoffice.Inet/Settings", "ooInetHTTPProxyPort", "int", str(DEAD_PROXY_PORT)),
    ("/org.openoffice.Inet/Settings", "ooInetHTTPSProxyName", "string", DEAD_PROXY_HOST),
    ("/org.openoffice.Inet/Settings", "ooInetHTTPSProxyPort", "int", str(DEAD_PROXY_PORT)),
    ("/org.openoffice.Inet/Settings", "ooInetFTPProxyName", "string", DEAD_PROXY_HOST),
    ("/org.openoffice.Inet/Settings", "ooInetFTPProxyPort", "int", str(DEAD_PROXY_PORT)),
    ("/org.openoffice.Inet/Settings", "ooInetNoProxy", "string", ""),
    # No lock files, no recovery data: a service has no user. (There is no update check
    # to turn off: Debian builds LibreOffice without online update; a path LibreOffice
    # does not know is silently ignored, which tests/test_hostile.py checks for.)
    ("/org.openoffice.Office.Common/Misc", "UseDocumentSystemFileLocking",
     "boolean", "false"),
    ("/org.openoffice.Office.Recovery/AutoSave", "Enabled", "boolean", "false"),
    ("/org.openoffice.Office.Recovery/RecoveryInfo", "Enabled", "boolean", "false"),
    ("/org.openoffice.Office.Common/Misc", "FirstRun", "boolean", "false"),
    # Output must not depend on the host's locale: under de_DE a CSV would read 3,14 and
    # 15.01.2024. en-US is the locale the CSV fast path's rule matches.
    ("/org.openoffice.Setup/L10N", "ooSetupSystemLocale", "string", "en-US"),
)

# The same addresses for any child that honours the usual variables.
PROXY_ENV = {
    "http_proxy": f"http://{DEAD_PROXY_HOST}:{DEAD_PROXY_PORT}",
    "https_proxy": f"http://{DEAD_PROXY_HOST}:{DEAD_PROXY_PORT}",
    "ftp_proxy": f"http://{DEAD_PROXY_HOST}:{DEAD_PROXY_PORT}",
    "HTTP_PROXY": f"http://{DEAD_PROXY_HOST}:{DEAD_PROXY_PORT}",
    "HTTPS_PROXY": f"http://{DEAD_PROXY_HOST}:{DEAD_PROXY_PORT}",
    "no_proxy": "",
}


def registry_xml() -> str:
    """Return the registrymodifications.xcu text that hardens an instance."""
    items = "\n".join(
        f'<item oor:path="{escape(path)}"><prop oor:name="{name}" oor:op="fuse">'
        f"<value>{escape(value)}</value></prop></item>"
        for path, name, _type, value in HARDENING
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<oor:items xmlns:oor="http://openoffice.org/2001/registry" '
        'xmlns:xs="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        f"{items}\n</oor:items>\n"
    )


def write_profile(profile_dir: Path) -> Path:
    """Create a fresh profile directory holding only the hardened settings."""
    user = profile_dir / "user"
    user.mkdir(parents=True, exist_ok=True)
    (user / "registrymodifications.xcu").write_text(registry_xml(), encoding="utf-8")
    return profile_dir
