# What "the host as it was" means for the reboot scenario (prepare records it, verify
# compares after teardown and a second reboot): the kernel's own files, and the boot
# configuration tracefleet may touch. One line each, KEY=VALUE.
set -eu
t=/sys/kernel/tracing
echo "cmdline=$(tr ' ' '\n' < /proc/cmdline | grep -v '^tracelab\.' | sort | tr '\n' ' ')"
echo "kernel_cmdline=$(cat /etc/kernel/cmdline)"
echo "mount=$(grep ' - tracefs ' /proc/self/mountinfo | cut -d' ' -f5,6,9-)"
echo "debugfs=$(grep -c ' - debugfs ' /proc/self/mountinfo || true)"
echo "instances=$(ls $t/instances | tr '\n' ' ')"
echo "dynamic_events=$(tr '\n' ';' < $t/dynamic_events)"
echo "set_event=$(tr '\n' ';' < $t/set_event)"
echo "fstab=$(md5sum < /etc/fstab)"
echo "units=$(ls /etc/systemd/system | tr '\n' ' ')"
echo "persist_units=$(ls /etc/systemd/system/*.wants 2>/dev/null | grep -c tracefleet || true)"
