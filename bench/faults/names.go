package faults

import "strings"

// Subject is the tool the report judges: its figures are set against those
// of every other tool of the run (its peers).
const Subject = "backupd"

// Label is the outcome class in words, as the report and the charts print
// it ("recovered automatically").
func (o Outcome) Label() string {
	switch o {
	case SurvivedExact:
		return "survived exact"
	case RecoveredAuto:
		return "recovered automatically"
	case DetectedReported:
		return "detected and reported"
	case NeededHuman:
		return "needed a human"
	case SilentWrongData:
		return "silent wrong data"
	case DataLost:
		return "data lost"
	case NotApplicable:
		return "not applicable"
	}
	return string(o)
}

// Description says what the class means, for the report's legend.
func (o Outcome) Description() string {
	switch o {
	case SurvivedExact:
		return "the fault changed nothing a user would see; every restore matched its manifest"
	case RecoveredAuto:
		return "the fault broke a run, and the tool's next run, with no human step, succeeded and every restore matched"
	case DetectedReported:
		return "damage the tool cannot undo was found and reported, naming what is damaged, and no wrong data was restored"
	case NeededHuman:
		return "the tool only went on after an unlock, repair or similar manual step"
	case SilentWrongData:
		return "a restore or check reported success while data differed from the snapshot's manifest, or damage went unreported"
	case DataLost:
		return "a snapshot reported done could no longer be restored"
	case NotApplicable:
		return "the scenario cannot be applied to the tool (the cell says why)"
	}
	return ""
}

// Outcomes lists every class in Rank order, best first, then NotApplicable.
func Outcomes() []Outcome {
	return append(outcomeOrder[:len(outcomeOrder):len(outcomeOrder)], NotApplicable)
}

// ScenarioTitle names a scenario in words for headings and charts; an
// unknown identifier is returned as it is.
func ScenarioTitle(id string) string {
	switch id {
	case ScenarioHealthy:
		return "No fault"
	case ScenarioCrashBackup:
		return "Killed during a backup"
	case ScenarioCrashRestore:
		return "Killed during a restore"
	case ScenarioOutage:
		return "Storage outage"
	case ScenarioSourceBitRot:
		return "Bit rot in the source"
	case ScenarioRepoCorruption:
		return "Repository corruption"
	case ScenarioProxyCrash:
		return "Proxy crash and log rotation during a backup"
	case ScenarioLostWrites:
		return "Lost writes"
	case ScenarioImpact:
		return "Impact on the proxy's writes"
	}
	return id
}

// usageOrder is the order usage phases are shown in; other keys follow,
// sorted.
var usageOrder = []string{UsageFirstBackup, UsageNoChange, UsageChange, UsageBackup, UsageRestore}

// PhaseTitle names a usage key in words ("no-change backup").
func PhaseTitle(key string) string {
	switch key {
	case UsageBackup:
		return "backup"
	case UsageRestore:
		return "restore"
	case UsageFirstBackup:
		return "first backup"
	case UsageNoChange:
		return "no-change backup"
	case UsageChange:
		return "1% change backup"
	}
	return strings.ReplaceAll(key, "_", " ")
}
