<#
.SYNOPSIS
  Removes the CT-Ops agent from Windows: stops and deletes the ct-ops-agent service, then removes
  C:\Program Files\CT-Ops and C:\ProgramData\CT-Ops (configuration, keys, data, logs).

.DESCRIPTION
  Run in an elevated PowerShell:
    powershell -ExecutionPolicy Bypass -File "C:\Program Files\CT-Ops\uninstall.ps1"
  Safe to run again: whatever is already gone is skipped. A transcript is written to
  C:\Windows\Logs\CT-Ops\uninstall-<time>-<pid>.log (a folder only administrators can write to).

.PARAMETER ReportTask
  Remote uninstall (the agent starts this script with it): the agent_uninstall task to report.
  The script first restarts itself outside the agent's process tree, then copies the agent
  executable, agent.toml, ca.crt and the agent data folder to a private folder, removes the
  agent, reports the task succeeded (or failed, naming the failed step) with those copies
  (ct-ops-agent.exe report-task; three tries, 5 s apart, while the appliance is unreachable),
  and deletes the copies. A failed report is logged; it does not change the exit code. If the
  restart itself fails, nothing is removed and the failure is reported with the installed agent.

.PARAMETER Detached
  Set by the script itself on the restarted copy; not for use by hand.

.NOTES
  Exit codes: 0 removed (or nothing to remove), 1 usage, 2 not elevated, 6 a removal step failed.
#>
[CmdletBinding()]
param(
  [ValidatePattern('^tsk_[A-Za-z0-9]{1,64}$')]
  [string]$ReportTask = '',
  [switch]$Detached
)

Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

$ExitNotElevated = 2
$ExitStep = 6
$ServiceId = 'ct-ops-agent'
$ProgramDir = Join-Path $env:ProgramFiles 'CT-Ops'
$DataRoot = Join-Path $env:ProgramData 'CT-Ops'
$Wrapper = Join-Path $ProgramDir 'ct-ops-agent-service.exe'
# The last error, named in the failure report of a remote uninstall.
$script:Failure = ''

function Fail([int]$Code, [string]$Message) {
  $script:Failure = $Message
  Write-Error -Message "ct-ops uninstall: $Message" -ErrorAction Continue
  exit $Code
}

function Say([string]$Message) {
  Write-Host "ct-ops uninstall: $Message"
}

# Native programs do not honour $ErrorActionPreference: check every exit code here.
# -AllowFailure leaves the check to the caller ($LASTEXITCODE): for the report, which must never
# end the script.
function Invoke-Native([string]$FilePath, [string[]]$Arguments, [switch]$AllowFailure) {
  & $FilePath @Arguments
  if ($LASTEXITCODE -ne 0 -and -not $AllowFailure) {
    Fail $ExitStep "$FilePath $($Arguments -join ' ') exited with $LASTEXITCODE"
  }
}

# Reports the outcome of task $ReportTask with ct-ops-agent.exe from $ProgramFolder and agent.toml,
# ca.crt and the data folder (agent) from $DataFolder: the kit's copies, or the installed files
# while nothing is removed yet. Tries three times, 5 s apart, while the appliance is unreachable
# (exit 69 or 75). Never ends the script and never throws: a failed report is logged, and the
# task times out on the appliance.
function Send-Report([bool]$Removed, [string]$ProgramFolder, [string]$DataFolder) {
  if ($Removed) {
    $outcome = @('--outcome=succeeded', "--message=the CT-Ops agent was removed from $env:COMPUTERNAME")
  } else {
    # Windows PowerShell 5.1 does not escape quotes inside native arguments.
    $outcome = @('--outcome=failed', '--error-code=ERR_UNINSTALL_FAILED', ("--message=uninstall.ps1 failed on ${env:COMPUTERNAME}: $script:Failure" -replace '"', "'"))
  }
  try {
    $env:CT_OPS_DATA_DIR = Join-Path $DataFolder 'agent'
    if (Test-Path -LiteralPath (Join-Path $DataFolder 'ca.crt')) {
      $env:CT_OPS_INGEST_CA_CERT = Join-Path $DataFolder 'ca.crt'
    }
    $attempt = 1
    while ($true) {
      Invoke-Native (Join-Path $ProgramFolder 'ct-ops-agent.exe') (@('-config', (Join-Path $DataFolder 'agent.toml'), 'report-task', "--task-id=$ReportTask") + $outcome) -AllowFailure
      $reported = $LASTEXITCODE
      if (($reported -ne 69 -and $reported -ne 75) -or $attempt -ge 3) { break }
      $attempt++
      Start-Sleep -Seconds 5
    }
    if ($reported -eq 0) {
      Say "reported task $ReportTask to the appliance"
    } else {
      Write-Error -Message "ct-ops uninstall: reporting task $ReportTask failed (exit $reported); it times out on the appliance" -ErrorAction Continue
    }
  } catch {
    Write-Error -Message "ct-ops uninstall: reporting task $ReportTask failed ($_); it times out on the appliance" -ErrorAction Continue
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
# The pid keeps the restarted copy of a remote uninstall from reusing the first one's transcript.
Start-Transcript -LiteralPath (Join-Path $logDir ("uninstall-{0:yyyyMMdd-HHmmss}-{1}.log" -f (Get-Date), $PID)) | Out-Null

if ($ReportTask -ne '' -and -not $Detached) {
  # The agent started this script as its child, and WinSW ends the agent's child processes when
  # the service stops. Win32_Process.Create starts the real run under the WMI provider host
  # instead: outside the agent's process tree and job, so stopping the service cannot end it.
  $powershell = Join-Path $env:SystemRoot 'System32\WindowsPowerShell\v1.0\powershell.exe'
  $commandLine = '"{0}" -NoProfile -NonInteractive -ExecutionPolicy Bypass -File "{1}" -ReportTask {2} -Detached' -f $powershell, $PSCommandPath, $ReportTask
  try {
    $started = Invoke-CimMethod -ClassName Win32_Process -MethodName Create -Arguments @{ CommandLine = $commandLine; CurrentDirectory = $env:SystemRoot }
    if ($started.ReturnValue -ne 0) {
      $script:Failure = "Win32_Process.Create could not restart the uninstaller (return value $($started.ReturnValue))"
    }
  } catch {
    $script:Failure = "Win32_Process.Create could not restart the uninstaller ($_)"
  }
  if ($script:Failure -ne '') {
    # The agent has handed the task off and nothing was removed: report the failure now, with the
    # installed agent, instead of leaving the task to time out.
    Write-Error -Message "ct-ops uninstall: $script:Failure" -ErrorAction Continue
    Send-Report $false $ProgramDir $DataRoot
    Stop-Transcript | Out-Null
    exit $ExitStep
  }
  Say "uninstaller restarted outside the agent's process tree (pid $($started.ProcessId)); its transcript is the next one in $logDir"
  Stop-Transcript | Out-Null
  exit 0
}

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

# A remote uninstall reports after everything is gone: keep private copies of what the report
# needs (the executable, agent.toml, ca.crt and the data folder with the key and task ledger).
$kit = $null
if ($ReportTask -ne '') {
  try {
    # Created with its ACL in place (SYSTEM and Administrators only, nothing inherited): the
    # copies include the agent's private key.
    $acl = New-Object System.Security.AccessControl.DirectorySecurity
    $acl.SetAccessRuleProtection($true, $false)
    foreach ($sid in 'S-1-5-18', 'S-1-5-32-544') {
      $account = New-Object System.Security.Principal.SecurityIdentifier($sid)
      $acl.AddAccessRule((New-Object System.Security.AccessControl.FileSystemAccessRule($account, 'FullControl', 'ContainerInherit, ObjectInherit', 'None', 'Allow')))
    }
    $kit = Join-Path $env:SystemRoot ('Temp\ct-ops-report-{0}' -f [guid]::NewGuid().ToString('N'))
    [IO.Directory]::CreateDirectory($kit, $acl) | Out-Null
    Copy-Item -LiteralPath (Join-Path $ProgramDir 'ct-ops-agent.exe') -Destination $kit
    Copy-Item -LiteralPath (Join-Path $DataRoot 'agent.toml') -Destination $kit
    if (Test-Path -LiteralPath (Join-Path $DataRoot 'ca.crt')) {
      Copy-Item -LiteralPath (Join-Path $DataRoot 'ca.crt') -Destination $kit
    }
    Copy-Item -LiteralPath (Join-Path $DataRoot 'agent') -Destination (Join-Path $kit 'agent') -Recurse
  } catch {
    Write-Error -Message "ct-ops uninstall: cannot copy the agent for the report ($_); uninstalling without reporting task $ReportTask" -ErrorAction Continue
    if ($null -ne $kit) { Remove-Item -LiteralPath $kit -Recurse -Force -ErrorAction SilentlyContinue }
    $kit = $null
  }
}

$removed = $false
try {
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
  $removed = $true
} catch {
  Fail $ExitStep "$_"
} finally {
  # Runs on every way out, Fail's exit included. The report neither changes the exit code nor
  # skips the rest: the copies are deleted and the transcript is closed whatever it does.
  try {
    if ($null -ne $kit) { Send-Report $removed $kit $kit }
  } finally {
    if ($null -ne $kit) { Remove-Item -LiteralPath $kit -Recurse -Force -ErrorAction SilentlyContinue }
    Stop-Transcript | Out-Null
  }
}
exit 0
