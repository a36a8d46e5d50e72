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
  ``Cert:\\LocalMachine\\<store>`` to return the bound certificate's DER.
* Binding goes through ``Microsoft.Web.Administration.ServerManager``: setting
  ``CertificateHash``/``CertificateStoreName`` on the existing binding and ``CommitChanges()``
  replaces the HTTP.sys certificate in place (IP-based ``ip:port`` or SNI ``host:port``, as the
  binding's sslFlags say). ``Get-WebBinding ... AddSslCertificate`` fails with "already exists"
  when the binding has a certificate, and remove-then-add leaves a window with none.
* Removing a certificate binding (rollback to "no certificate") deletes the ``IIS:\\SslBindings``
  entry: ``<ip>!<port>`` for IP-based bindings, ``!<port>!<host>`` for SNI.
* Import uses ``Import-PfxCertificate`` into ``Cert:\\LocalMachine\\My`` without ``-Exportable``
  and intermediates go to ``Cert:\\LocalMachine\\CA`` (``Import-Certificate`` of a PKCS#7 file) so
  that HTTP.sys sends the chain.

None of this PowerShell can run on this build machine (there is no Windows here); the tests run
it against a simulated host that returns what IIS 10 would.
"""

from __future__ import annotations

#: The certificate store new certificates go to and bindings name ("Personal"). IIS 8+ also has
#: "WebHosting"; "My" is what IIS Manager uses by default and what every Windows version has.
STORE = "My"
#: The store that holds intermediate CA certificates, so that HTTP.sys can send the chain.
CA_STORE = "CA"

# Exit codes the templates use on purpose.
EXIT_NO_SUCH_BINDING = 2
EXIT_NO_SUCH_CERTIFICATE = 4
EXIT_NO_WEBADMINISTRATION = 5


def _t(name: str, body: str) -> str:
    return f"# tlsgate:iis-{name}\n{body.strip()}\n"


_OUT_JSON = (
    "function Out-Json($o) { [Console]::Out.Write([Convert]::ToBase64String("
    "[Text.Encoding]::UTF8.GetBytes((ConvertTo-Json -InputObject $o -Compress -Depth 6)))) }\n"
)

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

DISCOVER = _t("discover", _OUT_JSON + _WEBADMIN + r"""
$sites = @(); $certs = @{}
foreach ($s in @(Get-Website)) {
  $bs = @()
  foreach ($b in @($s.bindings.Collection)) {
    $h = ([string]$b.certificateHash).ToUpperInvariant(); $st = [string]$b.certificateStoreName
    if ($h -and -not $st) { $st = 'My' }
    if ($h -and -not $certs.ContainsKey($h)) {
      $c = Get-Item -LiteralPath ('Cert:\LocalMachine\' + $st + '\' + $h) -ErrorAction SilentlyContinue
      if ($c) { $certs[$h] = @{ der = [Convert]::ToBase64String($c.RawData); hasKey = [bool]$c.HasPrivateKey; store = $st } }
    }
    $bs += ,@{ protocol = [string]$b.protocol; bindingInformation = [string]$b.bindingInformation;
      sslFlags = [int]$b.sslFlags; certificateHash = $h; certificateStoreName = $st }
  }
  $sites += ,@{ name = [string]$s.name; id = [long]$s.id; state = [string]$s.state; bindings = $bs }
}
$v = Get-ItemProperty -LiteralPath 'HKLM:\SOFTWARE\Microsoft\InetStp' -ErrorAction SilentlyContinue
$me = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
Out-Json @{ sites = $sites; certs = $certs; version = ('' + $v.MajorVersion + '.' + $v.MinorVersion);
  admin = $me.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator);
  temp = (Join-Path $env:windir 'Temp'); build = [Environment]::OSVersion.Version.Build }
""")

IMPORT_CHAIN = _t("import-chain", _OUT_JSON + r"""
$before = @{}
foreach ($c in @(Get-ChildItem -LiteralPath 'Cert:\LocalMachine\CA')) { $before[$c.Thumbprint] = 1 }
$added = @(Import-Certificate -FilePath $P.path -CertStoreLocation 'Cert:\LocalMachine\CA' |
  Where-Object { -not $before.ContainsKey($_.Thumbprint) } | ForEach-Object { $_.Thumbprint })
Out-Json $added
""")

IMPORT_PFX = _t("import-pfx", _OUT_JSON + r"""
$existed = Test-Path -LiteralPath ('Cert:\LocalMachine\My\' + $P.thumbprint)
# The one-time password comes on standard input ($S), never on the command line.
$pw = ConvertTo-SecureString -String $S.password -AsPlainText -Force
# No -Exportable: the private key cannot be exported from the host again.
$imp = @(Import-PfxCertificate -FilePath $P.path -CertStoreLocation 'Cert:\LocalMachine\My' -Password $pw)
$leaf = $imp | Where-Object { $_.HasPrivateKey } | Select-Object -First 1
if (-not $leaf) { [Console]::Error.WriteLine('The PFX held no certificate with a private key.'); exit 4 }
Out-Json @{ thumbprint = [string]$leaf.Thumbprint; existed = [bool]$existed }
""")

BIND = _t("bind", _WEBADMIN + _SERVER_MANAGER + r"""
$site = $sm.Sites[[string]$P.site]
if ($null -eq $site) { [Console]::Error.WriteLine('Cannot find a site named ' + $P.site + '.'); exit 2 }
$b = @($site.Bindings | Where-Object { $_.Protocol -eq 'https' -and $_.BindingInformation -eq $P.binding })
if ($b.Count -ne 1) { [Console]::Error.WriteLine('Site ' + $P.site + ' has no https binding ' + $P.binding + '.'); exit 2 }
$path = 'Cert:\LocalMachine\' + $P.store + '\' + $P.thumbprint
$c = Get-Item -LiteralPath $path -ErrorAction SilentlyContinue
if (-not $c) { [Console]::Error.WriteLine("Cannot find path '" + $path + "' because it does not exist."); exit 4 }
if (-not $c.HasPrivateKey) { [Console]::Error.WriteLine('The certificate ' + $P.thumbprint + ' has no private key.'); exit 4 }
$hash = [byte[]]@(for ($i = 0; $i -lt $P.thumbprint.Length; $i += 2) { [Convert]::ToByte($P.thumbprint.Substring($i, 2), 16) })
$b[0].CertificateHash = $hash
$b[0].CertificateStoreName = [string]$P.store
$sm.CommitChanges()
""")

UNBIND = _t("unbind", _WEBADMIN + r"""
if ($P.sni) { $key = '!' + $P.port + '!' + $P.host } else { $key = '' + $P.ip + '!' + $P.port }
$path = 'IIS:\SslBindings\' + $key
if (Test-Path -LiteralPath $path) { Remove-Item -LiteralPath $path -Force }
""")

REMOVE_CERTS = _t("remove-certs", _OUT_JSON + _WEBADMIN + r"""
$used = @{}
foreach ($s in @(Get-Website)) {
  foreach ($b in @($s.bindings.Collection)) { if ($b.certificateHash) { $used[([string]$b.certificateHash).ToUpperInvariant()] = 1 } }
}
foreach ($e in @(Get-ChildItem -LiteralPath 'IIS:\SslBindings')) { if ($e.Thumbprint) { $used[([string]$e.Thumbprint).ToUpperInvariant()] = 1 } }
$removed = @(); $kept = @()
foreach ($t in @($P.thumbprints)) {
  $path = 'Cert:\LocalMachine\' + $P.store + '\' + $t
  if ($P.store -eq 'My' -and $used.ContainsKey($t)) { $kept += $t; continue }
  if (Test-Path -LiteralPath $path) {
    if ($P.store -eq 'My') { Remove-Item -LiteralPath $path -DeleteKey -Force } else { Remove-Item -LiteralPath $path -Force }
    $removed += $t
  }
}
Out-Json @{ removed = $removed; kept = $kept }
""")

RESTART = _t("restart", _OUT_JSON + _WEBADMIN + _SERVER_MANAGER + r"""
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
