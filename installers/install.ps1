<#
.SYNOPSIS
  Installs (or upgrades) the CT-Ops agent on Windows from an extracted offline bundle folder.

.DESCRIPTION
  Run from the bundle folder (docs/bundle-format.md) in an elevated PowerShell:
    powershell -ExecutionPolicy Bypass -File .\install.ps1

  1. Checks elevation and that the bundle's TARGET is this machine (windows-x64 / windows-arm64).
  2. Verifies every file against SHA256SUMS with Get-FileHash: a mismatch, a missing file or an
     unlisted file refuses the install. The copies are verified again after they are written.
  3. Installs:
       C:\Program Files\CT-Ops   ct-ops-agent.exe, the WinSW wrapper ct-ops-agent-service.exe
                                 (+ .xml, .exe.config), uninstall.ps1
       C:\ProgramData\CT-Ops     agent.toml, ca.crt, agent\ (data), logs\
     Both folders are limited to SYSTEM and Administrators (icacls /inheritance:r).
  4. Registers the service "ct-ops-agent" through WinSW (the agent executable cannot answer the
     Service Control Manager itself), sets its recovery actions and starts it.
  An existing installation is upgraded in place: the service is stopped first, agent.toml and
  ca.crt are kept unless -ReplaceConfig. The script never reads or evaluates agent.toml.

.PARAMETER ReplaceConfig
  Overwrite an existing agent.toml and ca.crt.

.PARAMETER NoStart
  Register the service but do not start it.

.NOTES
  Exit codes: 0 installed, 1 usage, 2 not elevated, 3 wrong platform, 4 bundle verification
  failed (checksum mismatch, missing or extra file), 6 an install step failed.
#>
[CmdletBinding()]
param(
  [switch]$ReplaceConfig,
  [switch]$NoStart
)

Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

$ExitNotElevated = 2
$ExitPlatform = 3
$ExitTampered = 4
$ExitStep = 6

$ServiceId = 'ct-ops-agent'
$BundleDir = $PSScriptRoot
$ProgramDir = Join-Path $env:ProgramFiles 'CT-Ops'
$DataRoot = Join-Path $env:ProgramData 'CT-Ops'
$Wrapper = Join-Path $ProgramDir 'ct-ops-agent-service.exe'
# Well-known SIDs, so the ACL is right on every display language: SYSTEM, BUILTIN\Administrators.
$SystemSid = '*S-1-5-18'
$AdminsSid = '*S-1-5-32-544'

function Fail([int]$Code, [string]$Message) {
  Write-Error -Message "ct-ops install: $Message" -ErrorAction Continue
  exit $Code
}

function Say([string]$Message) {
  Write-Host "ct-ops install: $Message"
}

# Runs a native program and fails the install on a non-zero exit code: $ErrorActionPreference
# does not cover native commands, so every one of them goes through here.
function Invoke-Native([string]$FilePath, [string[]]$Arguments) {
  & $FilePath @Arguments
  if ($LASTEXITCODE -ne 0) {
    Fail $ExitStep "$FilePath $($Arguments -join ' ') exited with $LASTEXITCODE"
  }
}

# --- preflight -------------------------------------------------------------------------------

$identity = [Security.Principal.WindowsIdentity]::GetCurrent()
if (-not ([Security.Principal.WindowsPrincipal]$identity).IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
  Fail $ExitNotElevated 'must run in an elevated PowerShell (Run as administrator)'
}

$nativeArch = $env:PROCESSOR_ARCHITEW6432
if (-not $nativeArch) { $nativeArch = $env:PROCESSOR_ARCHITECTURE }
switch ($nativeArch) {
  'AMD64' { $arch = 'x64' }
  'ARM64' { $arch = 'arm64' }
  default { Fail $ExitPlatform "unsupported CPU architecture: $nativeArch" }
}
$targetFile = Join-Path $BundleDir 'TARGET'
if (-not (Test-Path -LiteralPath $targetFile -PathType Leaf)) { Fail $ExitTampered 'TARGET is missing from the bundle' }
$target = (Get-Content -LiteralPath $targetFile -TotalCount 1).Trim()
if ($target -ne "windows-$arch") { Fail $ExitPlatform "this bundle is for $target but this machine is windows-$arch" }

# One install or uninstall at a time: a machine-wide named mutex. Windows releases it when its
# holder exits, even when killed; the next WaitOne then reports it abandoned, and owns it.
$installLock = New-Object System.Threading.Mutex($false, 'Global\CT-Ops-Agent-Install')
try {
  if (-not $installLock.WaitOne(0)) {
    Say 'another ct-ops install or uninstall is running: waiting for it (at most 10 minutes)'
    if (-not $installLock.WaitOne([TimeSpan]::FromMinutes(10))) { Fail $ExitStep 'another ct-ops install or uninstall still holds the lock' }
  }
} catch [System.Threading.AbandonedMutexException] {
  Say 'the last install or uninstall ended without releasing its lock: taking it over'
}

# --- the bundle is exactly what SHA256SUMS lists ---------------------------------------------

$sumsFile = Join-Path $BundleDir 'SHA256SUMS'
if (-not (Test-Path -LiteralPath $sumsFile -PathType Leaf)) { Fail $ExitTampered 'SHA256SUMS is missing from the bundle' }
$expected = @{}
foreach ($line in [IO.File]::ReadAllLines($sumsFile)) {
  if ($line -cnotmatch '^([0-9a-f]{64})  ([A-Za-z0-9_][A-Za-z0-9._-]*)$') { Fail $ExitTampered 'SHA256SUMS has a malformed line' }
  $name = $Matches[2]
  if ($expected.ContainsKey($name) -or $name -eq 'SHA256SUMS' -or $name -eq 'SHA256SUMS.minisig') { Fail $ExitTampered "SHA256SUMS lists $name twice or lists itself" }
  $expected[$name] = $Matches[1]
}
foreach ($item in Get-ChildItem -LiteralPath $BundleDir -Force) {
  # [A-Za-z0-9._-] only (\z: "$" would also match before a final newline).
  if ($item.Name -cnotmatch '^[A-Za-z0-9._-]+\z') { Fail $ExitTampered ("a bundle file name has characters outside [A-Za-z0-9._-]: {0}" -f ($item.Name -replace '[^A-Za-z0-9._-]', '?')) }
  if ($item.Name -eq 'SHA256SUMS' -or $item.Name -eq 'SHA256SUMS.minisig') { continue }
  if ($item.PSIsContainer -or -not $expected.ContainsKey($item.Name)) { Fail $ExitTampered "unexpected file in the bundle (not in SHA256SUMS): $($item.Name)" }
}
function Test-Sha256([string]$Path, [string]$Name) {
  $actual = (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant()
  return $actual -eq $expected[$Name]
}
foreach ($name in $expected.Keys) {
  $path = Join-Path $BundleDir $name
  if (-not (Test-Path -LiteralPath $path -PathType Leaf)) { Fail $ExitTampered "missing from the bundle: $name" }
  if (-not (Test-Sha256 $path $name)) { Fail $ExitTampered "checksum mismatch for ${name}: the bundle was altered or damaged" }
}
foreach ($name in 'ct-ops-agent.exe', 'agent.toml', 'ca.crt', 'ct-ops-agent-service.exe', 'ct-ops-agent-service.xml', 'ct-ops-agent-service.exe.config', 'uninstall.ps1') {
  if (-not $expected.ContainsKey($name)) { Fail $ExitTampered "the bundle has no $name" }
}
Say "all $($expected.Count) bundle files match SHA256SUMS"
if (Test-Path -LiteralPath (Join-Path $BundleDir 'SHA256SUMS.minisig')) {
  Say 'note: SHA256SUMS.minisig is not checked here; it must have been verified at the transfer station'
}

# --- install ---------------------------------------------------------------------------------

# Copies a verified bundle file next to its destination under a unique name, verifies the copy,
# then moves it in.
function Install-BundleFile([string]$Name, [string]$Destination) {
  $temporary = '{0}.{1}.ct-ops-new' -f $Destination, [guid]::NewGuid().ToString('N')
  Copy-Item -LiteralPath (Join-Path $BundleDir $Name) -Destination $temporary -Force
  if (-not (Test-Sha256 $temporary $Name)) {
    Remove-Item -LiteralPath $temporary -Force
    Fail $ExitTampered "the copy of $Name does not match SHA256SUMS"
  }
  Move-Item -LiteralPath $temporary -Destination $Destination -Force
}

# Only SYSTEM and Administrators: no inherited entries (ProgramData grants Users read/create).
function Set-PrivateAcl([string]$Path) {
  Invoke-Native 'icacls.exe' @($Path, '/inheritance:r', '/grant:r', "${SystemSid}:(OI)(CI)F", "${AdminsSid}:(OI)(CI)F", '/Q')
  Invoke-Native 'icacls.exe' @($Path, '/setowner', $AdminsSid, '/T', '/C', '/Q')
}

$existing = Get-Service -Name $ServiceId -ErrorAction SilentlyContinue
if ($null -ne $existing) {
  Say 'existing installation found: upgrading in place'
  if ($existing.Status -ne 'Stopped') {
    Invoke-Native $Wrapper @('stop')
    $existing.WaitForStatus('Stopped', [TimeSpan]::FromSeconds(30))
  }
}

foreach ($dir in $ProgramDir, $DataRoot, (Join-Path $DataRoot 'agent'), (Join-Path $DataRoot 'logs')) {
  New-Item -ItemType Directory -Path $dir -Force | Out-Null
}
# Lock the folders down before anything secret is written into them.
Set-PrivateAcl $ProgramDir
Set-PrivateAcl $DataRoot

Install-BundleFile 'ct-ops-agent.exe' (Join-Path $ProgramDir 'ct-ops-agent.exe')
Install-BundleFile 'ct-ops-agent-service.exe' $Wrapper
Install-BundleFile 'ct-ops-agent-service.xml' (Join-Path $ProgramDir 'ct-ops-agent-service.xml')
Install-BundleFile 'ct-ops-agent-service.exe.config' (Join-Path $ProgramDir 'ct-ops-agent-service.exe.config')
Install-BundleFile 'uninstall.ps1' (Join-Path $ProgramDir 'uninstall.ps1')
$configPath = Join-Path $DataRoot 'agent.toml'
if ($ReplaceConfig -or -not (Test-Path -LiteralPath $configPath)) {
  Install-BundleFile 'agent.toml' $configPath
  Install-BundleFile 'ca.crt' (Join-Path $DataRoot 'ca.crt')
} else {
  Say 'keeping the existing agent.toml and ca.crt (pass -ReplaceConfig to overwrite)'
}
# Files moved in keep the ACL they were created with: re-apply the folders' ACL to everything.
Invoke-Native 'icacls.exe' @($ProgramDir, '/reset', '/T', '/C', '/Q')
Invoke-Native 'icacls.exe' @($DataRoot, '/reset', '/T', '/C', '/Q')
Set-PrivateAcl $ProgramDir
Set-PrivateAcl $DataRoot

if ($null -eq $existing) {
  Invoke-Native $Wrapper @('install')
} else {
  # Picks up a changed ct-ops-agent-service.xml (WinSW reads it at start; install-time fields
  # such as the recovery actions are set again below).
  Say "service $ServiceId already registered"
}
# Recovery actions, also when WinSW was registered by an older version: restart after 5 s,
# 5 s, 60 s; reset the failure count after a day; also act on a non-crash failure exit.
Invoke-Native 'sc.exe' @('failure', $ServiceId, 'reset=', '86400', 'actions=', 'restart/5000/restart/5000/restart/60000')
Invoke-Native 'sc.exe' @('failureflag', $ServiceId, '1')
Invoke-Native 'sc.exe' @('config', $ServiceId, 'start=', 'auto')

if ($NoStart) {
  Say "service $ServiceId registered but not started (-NoStart)"
  exit 0
}
Invoke-Native $Wrapper @('start')
Start-Sleep -Seconds 3
$service = Get-Service -Name $ServiceId
if ($service.Status -ne 'Running') { Fail $ExitStep "service $ServiceId is $($service.Status); see $DataRoot\logs" }
Say "service $ServiceId is running; logs: $DataRoot\logs"
exit 0
