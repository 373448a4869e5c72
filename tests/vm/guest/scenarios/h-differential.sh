# (h) differential: the same action sequences, including actions the kernel refuses, on the
# simulated dataplane and on the real kernel give the same errno per action, the same observed
# state and the same destination order (tests/vm/differential.rs, run here against this kernel).
if [ ! -x /usr/bin/vm-differential ]; then
  fail "(h) the differential test binary is in the guest" "/usr/bin/vm-differential" "missing"
  return 0 2>/dev/null || exit 0
fi
ipvsadm -C
vm-differential --ignored --nocapture --test-threads=1 > /tmp/h.out 2>&1
rc=$?
cat /tmp/h.out
if [ $rc = 0 ] && grep -q '^test result: ok. 1 passed' /tmp/h.out; then
  pass "(h) simulated and kernel dataplanes agree: errnos, observed state, destination order ($(grep -c '^sequence ' /tmp/h.out) sequences)"
else
  fail "(h) simulated and kernel dataplanes agree: errnos, observed state, destination order" \
    "test result: ok. 1 passed" "$(grep -e ': action ' -e 'observed states differ' -e '^test result' -e panicked /tmp/h.out | head -40)"
fi
