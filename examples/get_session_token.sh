#!/usr/bin/env bash
# The AWS CLI gets MFA session credentials from sts-broker, then `curl --aws-sigv4` calls an API
# behind the gate: through the gateway, and through nginx (forward-auth), when NGINX_URL is set.
#
# Environment:
#   STS_ENDPOINT   the broker, e.g. http://127.0.0.1:8080
#   GATE_URL       the gateway, e.g. http://127.0.0.1:8081
#   NGINX_URL      optional: nginx with examples/nginx/sts-broker-gate.conf, e.g. http://127.0.0.1:8088
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   a long-term key of the user
#   MFA_SERIAL, MFA_CODE                       the user's MFA device and a fresh code
set -euo pipefail
: "${STS_ENDPOINT:?}" "${GATE_URL:?}" "${MFA_SERIAL:?}" "${MFA_CODE:?}"
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE AWS_REGION
export AWS_DEFAULT_REGION=us-east-1

creds=$(aws --endpoint-url "$STS_ENDPOINT" sts get-session-token \
    --serial-number "$MFA_SERIAL" --token-code "$MFA_CODE" --duration-seconds 3600 \
    --query 'Credentials.[AccessKeyId,SecretAccessKey,SessionToken]' --output text)
SK=$(printf '%s\n' "$creds" | cut -f1)
SS=$(printf '%s\n' "$creds" | cut -f2)
ST=$(printf '%s\n' "$creds" | cut -f3)
echo "MFA session $SK"

call() {
    curl -sS --fail-with-body --aws-sigv4 "aws:amz:us-east-1:execute-api" --user "$SK:$SS" \
        -H "x-amz-security-token: $ST" "$@"
}
echo "--- through the gateway"
call "$GATE_URL/hello?from=cli"
if [[ -n ${NGINX_URL:-} ]]; then
    echo "--- through nginx"
    call "$NGINX_URL/hello?from=nginx"
fi
echo "--- the long-term key is refused (MFA required)"
curl -sS --aws-sigv4 "aws:amz:us-east-1:execute-api" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$GATE_URL/hello"
echo
