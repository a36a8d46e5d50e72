"""The fixed PowerShell templates the IIS driver runs (WebAdministration, IIS 10).

Every template is constant text whose first line is ``# tlsgate:iis-<name>``; values (site names,
binding information, thumbprints) arrive only as ``$P``, decoded by the core's prelude
(:func:`tlsgate.quoting.ps_script`); the one-time PFX password arrives as ``$S`` on the command's
standard input (``secret_params``), never on the powershell command line, which Windows shows in
process listings and audit events. Values are used as data: compared with
``-eq``, passed as ``-LiteralPath`` or as method arguments, concatenated into a string. Nothing
is ever parsed as PowerShell. Output that holds names is base64 of UTF-8 JSON (``Out-Json``):
the console code page over WinRM (437) would mangle anything outside ASCII.

Why these cmdlets and classes (protocols.md section 3, Keyfactor's iis-orchestrator scripts):

* Discovery reads ``Get-Website`` and each site's ``bindings.Collection``, whose
  ``certificateHash``/``certificateStoreName`` come from HTTP.sys, and joins the hash with
  ``Cert:\\LocalMachine\\<store>`` to return the bound certificate's DER. Certificate fields are
  read only for https bindings (net.tcp, net.pipe, msmq.formatname and ftp bindings carry no
  ``ip:port:host``), and every getter is guarded: a site whose ``State`` throws (an FTP-only site:
  0x800710D8, win-acme #539, MicrosoftDocs/iis-docs #551) or a binding that cannot be read comes
  back with its reason, and the rest of the discovery goes on.
* Binding goes through ``Microsoft.Web.Administration.ServerManager`` and *replaces* the binding:
  a new ``binding`` element gets every attribute of the old one (protocol, bindingInformation,
  sslFlags, anything else) and the new certificate, the old one is removed, the new one added at
  the same position, and ``CommitChanges()`` applies both in one configuration commit. Setting
  ``CertificateHash`` on the existing binding (what this driver did first) is the path that fails
  on real servers with "A specified logon session does not exist" (0x80070520) inside
  ``BindingManager.Save`` and can leave the binding with no certificate: win-acme #371 and #386
  replaced it by this same recreate, Certify The Web #308 (PR #314) re-creates bindings too, and
  Keyfactor's IIS orchestrator (``New-KFIISSiteBinding``) removes and adds. Rollback uses the same
  template with the previous thumbprint, or with none.
* A binding that had no certificate gets that state back by the same replace with no
  certificate; the HTTP.sys entry is then deleted by its exact key (``netsh http delete sslcert
  ipport=<ip>:<port>``, IPv6 as ``[addr]:port``, or ``hostnameport=<host>:<port>``). Nothing lists
  ``IIS:\\SslBindings``: that enumeration fails for the whole host ("Failed to enumerate SSL
  bindings, error code 234") as soon as any application registered an HTTP.sys entry without a
  certificate store name (OctopusDeploy/Issues #554 and #876).
* Every template first checks the PowerShell language mode: on a ConstrainedLanguage host
  (AppLocker / WDAC) ``Add-Type`` and ``New-Object`` of non-core types fail, so the templates stop
  at once with a clear message (exit 6) instead of half-way through an install.
* Import uses ``Import-PfxCertificate`` into ``Cert:\\LocalMachine\\My`` without ``-Exportable``
  and intermediates go to ``Cert:\\LocalMachine\\CA`` (``Import-Certificate`` of a PKCS#7 file) so
  that HTTP.sys sends the chain.

None of this PowerShell can run on this build machine (there is no Windows here); the tests run
it against a simulated host that returns what IIS 10 would.
"""

from __future__ import annotations

from tlsgate.plugin import PS_OUT_JSON, ps_template

#: The certificate store new certificates go to and bindings name ("Personal"). IIS 8+ also has
#: "WebHosting"; "My" is what IIS Manager uses by default and what every Windows version has.
STORE = "My"
#: The store that holds intermediate CA certificates, so that HTTP.sys can send the chain.
CA_STORE = "CA"

# Exit codes the templates use on purpose.
EXIT_NO_SUCH_BINDING = 2
EXIT_NO_SUCH_CERTIFICATE = 4
EXIT_NO_WEBADMINISTRATION = 5
EXIT_NOT_FULL_LANGUAGE = 6

#: How the templates' message on a ConstrainedLanguage host begins.
NOT_FULL_LANGUAGE = "PowerShell on this host runs in"

_FULL_LANGUAGE = (
    "# ConstrainedLanguage (AppLocker / WDAC) forbids Add-Type and New-Object of non-core types; stop\n"
    "# before anything changes. Write-Output and exit work in every language mode, [Console] may not.\n"
    "$lm = [string]$ExecutionContext.SessionState.LanguageMode\n"
    "if ($lm -ne 'FullLanguage') { Write-Output ('" + NOT_FULL_LANGUAGE + " ' + $lm + ' mode (AppLocker or WDAC "
    "policy); the IIS driver needs FullLanguage (Add-Type, New-Object).'); exit 6 }\n"
)


def _t(name: str, body: str) -> str:
    return ps_template(f"iis-{name}", _FULL_LANGUAGE + body)


_WEBADMIN = (
    "if (-not (Get-Module -ListAvailable -Name WebAdministration)) {\n"
    "  [Console]::Error.WriteLine('The WebAdministration module is not installed (IIS or its management "
    "scripts and tools are missing).'); exit 5 }\n"
    "Import-Module WebAdministration\n"
)

_SERVER_MANAGER = (
    "Add-Type -Path (Join-Path $env:windir 'System32\\inetsrv\\Microsoft.Web.Administration.dll')\n"
    "$sm = New-Object Microsoft.Web.Administration.ServerManager\n"
)

DISCOVER = _t("discover", PS_OUT_JSON + _WEBADMIN + r"""
$sites = @(); $certs = @{}
foreach ($s in @(Get-Website)) {
  $site = @{ name = [string]$s.name; id = [long]$s.id; state = ''; bindings = @() }
  # State throws for a site without http(s) bindings (FTP only: 0x800710D8); report it, go on.
  try { $site.state = [string]$s.state } catch { $site.stateError = $_.Exception.Message }
  try { $coll = @($s.bindings.Collection) } catch { $site.error = $_.Exception.Message; $sites += ,$site; continue }
  $bs = @()
  foreach ($b in $coll) {
    $e = @{ protocol = ''; bindingInformation = '' }
    try {
      $e.protocol = [string]$b.protocol; $e.bindingInformation = [string]$b.bindingInformation
      if ($e.protocol -eq 'https') {
        # certificate fields only for https: net.tcp, net.pipe, msmq and ftp bindings have none
        $e.sslFlags = [int]$b.sslFlags
        $h = ([string]$b.certificateHash).ToUpperInvariant(); $st = [string]$b.certificateStoreName
        if ($h -and -not $st) { $st = 'My' }
        $e.certificateHash = $h; $e.certificateStoreName = $st
        if ($h -and -not $certs.ContainsKey($h)) {
          $c = Get-Item -LiteralPath ('Cert:\LocalMachine\' + $st + '\' + $h) -ErrorAction SilentlyContinue
          if ($c) { $certs[$h] = @{ der = [Convert]::ToBase64String($c.RawData); hasKey = [bool]$c.HasPrivateKey; store = $st } }
        }
      }
    } catch { $e.error = $_.Exception.Message }
    $bs += ,$e
  }
  $site.bindings = $bs
  $sites += ,$site
}
$v = Get-ItemProperty -LiteralPath 'HKLM:\SOFTWARE\Microsoft\InetStp' -ErrorAction SilentlyContinue
$me = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
Out-Json @{ sites = $sites; certs = $certs; version = ('' + $v.MajorVersion + '.' + $v.MinorVersion);
  admin = $me.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator);
  temp = (Join-Path $env:windir 'Temp'); build = [Environment]::OSVersion.Version.Build }
""")

IMPORT_CHAIN = _t("import-chain", PS_OUT_JSON + r"""
$before = @{}
foreach ($c in @(Get-ChildItem -LiteralPath 'Cert:\LocalMachine\CA')) { $before[$c.Thumbprint] = 1 }
$added = @(Import-Certificate -FilePath $P.path -CertStoreLocation 'Cert:\LocalMachine\CA' |
  Where-Object { -not $before.ContainsKey($_.Thumbprint) } | ForEach-Object { $_.Thumbprint })
Out-Json $added
""")

IMPORT_PFX = _t("import-pfx", PS_OUT_JSON + r"""
$existed = Test-Path -LiteralPath ('Cert:\LocalMachine\My\' + $P.thumbprint)
# The one-time password comes on standard input ($S), never on the command line.
$pw = ConvertTo-SecureString -String $S.password -AsPlainText -Force
# No -Exportable: the private key cannot be exported from the host again.
$imp = @(Import-PfxCertificate -FilePath $P.path -CertStoreLocation 'Cert:\LocalMachine\My' -Password $pw)
$leaf = $imp | Where-Object { $_.HasPrivateKey } | Select-Object -First 1
if (-not $leaf) { [Console]::Error.WriteLine('The PFX held no certificate with a private key.'); exit 4 }
Out-Json @{ thumbprint = [string]$leaf.Thumbprint; existed = [bool]$existed }
""")

# Find the binding, then replace it by a copy of all its attributes with certificate $hash (or
# none): never an update in place (0x80070520: win-acme #371/#386, Certify #308, Keyfactor).
_REPLACE_BINDING = r"""
$site = $sm.Sites[[string]$P.site]
if ($null -eq $site) { [Console]::Error.WriteLine('Cannot find a site named ' + $P.site + '.'); exit 2 }
$b = @($site.Bindings | Where-Object { $_.Protocol -eq 'https' -and $_.BindingInformation -eq $P.binding })
if ($b.Count -ne 1) { [Console]::Error.WriteLine('Site ' + $P.site + ' has no https binding ' + $P.binding + '.'); exit 2 }
$old = $b[0]
$new = $site.Bindings.CreateElement('binding')
foreach ($a in @($old.Attributes)) {
  if ($a.Name -ne 'certificateHash' -and $a.Name -ne 'certificateStoreName' -and $null -ne $a.Value) {
    $new.SetAttributeValue($a.Name, $a.Value)
  }
}
if ($null -ne $hash) { $new.CertificateHash = $hash; $new.CertificateStoreName = [string]$P.store }
$at = $site.Bindings.IndexOf($old)
$site.Bindings.Remove($old)
[void]$site.Bindings.AddAt($at, $new)
$sm.CommitChanges()
"""

BIND = _t("bind", _SERVER_MANAGER + r"""
$path = 'Cert:\LocalMachine\' + $P.store + '\' + $P.thumbprint
$c = Get-Item -LiteralPath $path -ErrorAction SilentlyContinue
if (-not $c) { [Console]::Error.WriteLine("Cannot find path '" + $path + "' because it does not exist."); exit 4 }
if (-not $c.HasPrivateKey) { [Console]::Error.WriteLine('The certificate ' + $P.thumbprint + ' has no private key.'); exit 4 }
$hash = $c.GetCertHash()
""" + _REPLACE_BINDING)

UNBIND = _t("unbind", _SERVER_MANAGER + "$hash = $null\n" + _REPLACE_BINDING + r"""
# The HTTP.sys entry goes by its exact key (never enumerate IIS:\SslBindings: error 234).
$ErrorActionPreference = 'Continue'
$shown = & netsh http show sslcert ([string]$P.httpsys) 2>&1
if ($LASTEXITCODE -eq 0) {
  $out = & netsh http delete sslcert ([string]$P.httpsys) 2>&1
  if ($LASTEXITCODE -ne 0) { [Console]::Error.WriteLine('netsh http delete sslcert ' + $P.httpsys + ': ' + ($out -join ' ')); exit 1 }
}
""")

REMOVE_CERTS = _t("remove-certs", PS_OUT_JSON + _WEBADMIN + r"""
$used = @{}
foreach ($s in @(Get-Website)) {
  try { $coll = @($s.bindings.Collection) } catch { continue }
  foreach ($b in $coll) {
    try { if ([string]$b.protocol -eq 'https' -and $b.certificateHash) { $used[([string]$b.certificateHash).ToUpperInvariant()] = 1 } } catch { }
  }
}
# Certificates other applications bound in HTTP.sys: netsh lists every entry, also those without a
# store name that make the IIS:\SslBindings provider fail (error 234). Hashes are hex, so a plain
# substring test of the listing is exact and independent of the display language.
$ErrorActionPreference = 'Continue'
$listing = ((& netsh http show sslcert 2>&1) | Out-String).ToUpperInvariant()
$ErrorActionPreference = 'Stop'
$removed = @(); $kept = @()
foreach ($t in @($P.thumbprints)) {
  $path = 'Cert:\LocalMachine\' + $P.store + '\' + $t
  if ($P.store -eq 'My' -and ($used.ContainsKey($t) -or $listing.Contains(([string]$t).ToUpperInvariant()))) { $kept += $t; continue }
  if (Test-Path -LiteralPath $path) {
    if ($P.store -eq 'My') { Remove-Item -LiteralPath $path -DeleteKey -Force } else { Remove-Item -LiteralPath $path -Force }
    $removed += $t
  }
}
Out-Json @{ removed = $removed; kept = $kept }
""")

RESTART = _t("restart", PS_OUT_JSON + _WEBADMIN + _SERVER_MANAGER + r"""
# State throws for a site without an http(s) binding (FTP only): report it as Unknown.
function Get-State($s) { try { [string]$s.State } catch { 'Unknown' } }
$before = @{}
foreach ($s in $sm.Sites) { $before[$s.Name] = Get-State $s }
Restart-Service -Name W3SVC -Force
(Get-Service -Name W3SVC).WaitForStatus('Running', [TimeSpan]::FromSeconds([int]$P.timeout))
$sm = New-Object Microsoft.Web.Administration.ServerManager
$sites = @()
foreach ($s in $sm.Sites) {
  if ($before[$s.Name] -eq 'Started' -and (Get-State $s) -ne 'Started') { try { [void]$s.Start() } catch { } }
  $sites += ,@{ name = [string]$s.Name; before = $before[$s.Name]; after = (Get-State $s) }
}
Out-Json @{ service = [string](Get-Service -Name W3SVC).Status; sites = $sites }
""")

#: Every template of this plugin, by name (the simulated host in the tests registers these).
TEMPLATES: dict[str, str] = {
    "iis-discover": DISCOVER,
    "iis-import-chain": IMPORT_CHAIN,
    "iis-import-pfx": IMPORT_PFX,
    "iis-bind": BIND,
    "iis-unbind": UNBIND,
    "iis-remove-certs": REMOVE_CERTS,
    "iis-restart": RESTART,
}
