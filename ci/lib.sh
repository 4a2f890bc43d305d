# Shell helpers shared by ci/examples_check.sh and ci/gate_bench.sh (sourced, bash).

# A free loopback TCP port.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits up to 30 s for 127.0.0.1:PORT to accept; NAME is for the error.
wait_port() { # PORT NAME
    for _ in $(seq 1 300); do
        python3 -c 'import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(("127.0.0.1", int(sys.argv[1]))))' "$1" && return 0
        sleep 0.1
    done
    echo "error: nothing listens on port $1 ($2)" >&2
    return 1
}

# COUNT consecutive TOTP codes of SEED (base32) from STEPS steps from now, space-separated
# (RFC 6238, 30 s, 6 digits); one clock reading, so they are consecutive even across a step.
totp() { # SEED STEPS [COUNT]
    python3 -c 'import base64,hmac,struct,sys,time
a=sys.argv[1:]; s=a[0]; k=base64.b32decode(s+"="*(-len(s)%8)); t=int(time.time())//30+int((a[1:]or[0])[0])
def c(t): h=hmac.new(k,struct.pack(">Q",t),"sha1").digest(); i=h[-1]&15; return "%06d"%((struct.unpack(">I",h[i:i+4])[0]&0x7fffffff)%10**6)
print(" ".join(c(t+j) for j in range(int((a[2:]or[1])[0]))))' "$@"
}

# As the root user of the broker at $EP (ROOT_KEY, ROOT_SECRET), creates user NAME with an
# access key and an enabled virtual MFA device (seed in $SCRATCH); sets KEY, SECRET, SERIAL and
# CODE (a code the device has not used yet, for GetSessionToken).
mfa_user() { # NAME
    local keys seed codes
    AWS_ACCESS_KEY_ID=$ROOT_KEY AWS_SECRET_ACCESS_KEY=$ROOT_SECRET \
        aws --endpoint-url "$EP" iam create-user --user-name "$1" >/dev/null
    keys=$(AWS_ACCESS_KEY_ID=$ROOT_KEY AWS_SECRET_ACCESS_KEY=$ROOT_SECRET \
        aws --endpoint-url "$EP" iam create-access-key --user-name "$1" \
        --query 'AccessKey.[AccessKeyId,SecretAccessKey]' --output text)
    KEY=$(cut -f1 <<<"$keys")
    SECRET=$(cut -f2 <<<"$keys")
    SERIAL=$(AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET \
        aws --endpoint-url "$EP" iam create-virtual-mfa-device --virtual-mfa-device-name "$1" \
        --bootstrap-method Base32StringSeed --outfile "$SCRATCH/$1.seed" \
        --query VirtualMFADevice.SerialNumber --output text)
    seed=$(cat "$SCRATCH/$1.seed")
    codes=$(totp "$seed" -1 2)
    AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET \
        aws --endpoint-url "$EP" iam enable-mfa-device --user-name "$1" --serial-number "$SERIAL" \
        --authentication-code1 "${codes% *}" --authentication-code2 "${codes#* }"
    # Now's code, or the next step's while now's is the one just spent. Not always the next
    # step's: codes sent just after a step boundary are remembered as the device's drift, and
    # the window then centres one step earlier (docs/mfa.md#drift-and-resync).
    CODE=$(totp "$seed")
    [[ $CODE != "${codes#* }" ]] || CODE=$(totp "$seed" 1)
}
