<#
.SYNOPSIS
  Removes the CT-Ops agent from Windows: stops and deletes the ct-ops-agent service, then removes
  C:\Program Files\CT-Ops and C:\ProgramData\CT-Ops (configuration, keys, data, logs).

.DESCRIPTION
  Run in an elevated PowerShell:
    powershell -ExecutionPolicy Bypass -File "C:\Program Files\CT-Ops\uninstall.ps1"
  Safe to run again: whatever is already gone is skipped. A transcript is written to
  C:\Windows\Logs\CT-Ops\uninstall-<time>.log (a folder only administrators can write to).

.NOTES
  Exit codes: 0 removed (or nothing to remove), 2 not elevated, 6 a removal step failed.
#>
[CmdletBinding()]
param()

Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

$ExitNotElevated = 2
$ExitStep = 6
$ServiceId = 'ct-ops-agent'
$ProgramDir = Join-Path $env:ProgramFiles 'CT-Ops'
$DataRoot = Join-Path $env:ProgramData 'CT-Ops'
$Wrapper = Join-Path $ProgramDir 'ct-ops-agent-service.exe'

function Fail([int]$Code, [string]$Message) {
  Write-Error -Message "ct-ops uninstall: $Message" -ErrorAction Continue
  exit $Code
}

function Say([string]$Message) {
  Write-Host "ct-ops uninstall: $Message"
}

# Native programs do not honour $ErrorActionPreference: check every exit code here.
function Invoke-Native([string]$FilePath, [string[]]$Arguments) {
  & $FilePath @Arguments
  if ($LASTEXITCODE -ne 0) {
    Fail $ExitStep "$FilePath $($Arguments -join ' ') exited with $LASTEXITCODE"
  }
}

$identity = [Security.Principal.WindowsIdentity]::GetCurrent()
if (-not ([Security.Principal.WindowsPrincipal]$identity).IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
  Fail $ExitNotElevated 'must run in an elevated PowerShell (Run as administrator)'
}

# This script may itself live in the folder it removes.
Set-Location -LiteralPath $env:SystemRoot
$logDir = Join-Path $env:SystemRoot 'Logs\CT-Ops'
New-Item -ItemType Directory -Path $logDir -Force | Out-Null
Start-Transcript -LiteralPath (Join-Path $logDir ("uninstall-{0:yyyyMMdd-HHmmss}.log" -f (Get-Date))) | Out-Null

$service = Get-Service -Name $ServiceId -ErrorAction SilentlyContinue
if ($null -ne $service) {
  if ($service.Status -ne 'Stopped') {
    Say "stopping service $ServiceId"
    if (Test-Path -LiteralPath $Wrapper) {
      Invoke-Native $Wrapper @('stop')
    } else {
      Invoke-Native 'sc.exe' @('stop', $ServiceId)
    }
    $service.WaitForStatus('Stopped', [TimeSpan]::FromSeconds(30))
  }
  Say "deleting service $ServiceId"
  if (Test-Path -LiteralPath $Wrapper) {
    Invoke-Native $Wrapper @('uninstall')
  } else {
    Invoke-Native 'sc.exe' @('delete', $ServiceId)
  }
  # The SCM removes the entry once every handle is closed.
  for ($i = 0; $i -lt 30 -and $null -ne (Get-Service -Name $ServiceId -ErrorAction SilentlyContinue); $i++) {
    Start-Sleep -Seconds 1
  }
}

foreach ($dir in $ProgramDir, $DataRoot) {
  if (Test-Path -LiteralPath $dir) {
    Say "removing $dir"
    Remove-Item -LiteralPath $dir -Recurse -Force
  }
}
Say 'CT-Ops agent removed'
Stop-Transcript | Out-Null
exit 0
