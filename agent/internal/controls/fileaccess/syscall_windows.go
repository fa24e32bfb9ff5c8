package fileaccess

//go:generate go run golang.org/x/sys/windows/mkwinsyscall -output zsyscall_windows.go syscall_windows.go

// x/sys/windows has no wevtapi (Windows Event Log) or audit-policy wrappers.
//sys evtQuery(session windows.Handle, path *uint16, query *uint16, flags uint32) (h windows.Handle, err error) [failretval==0] = wevtapi.EvtQuery
//sys evtNext(resultSet windows.Handle, eventsSize uint32, events *windows.Handle, timeout uint32, flags uint32, returned *uint32) (err error) = wevtapi.EvtNext
//sys evtRender(context windows.Handle, fragment windows.Handle, flags uint32, bufferSize uint32, buffer *uint16, bufferUsed *uint32, propertyCount *uint32) (err error) = wevtapi.EvtRender
//sys evtClose(h windows.Handle) (err error) = wevtapi.EvtClose
//sys auditSetSystemPolicy(policy *auditPolicyInformation, count uint32) (err error) = advapi32.AuditSetSystemPolicy
//sys auditQuerySystemPolicy(subCategoryGuids *windows.GUID, policyCount uint32, auditPolicy **auditPolicyInformation) (err error) = advapi32.AuditQuerySystemPolicy
//sys auditFree(buffer unsafe.Pointer) = advapi32.AuditFree
