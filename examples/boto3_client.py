#!/usr/bin/env python3
"""boto3 against sts-broker: MFA session credentials from GetSessionToken (endpoint_url), then a
call to an API behind `sts-broker gate`, signed for `execute-api` with botocore's SigV4Auth.

Environment:
  STS_ENDPOINT        the broker, e.g. http://127.0.0.1:8080
  GATED_URL           the protected API through the gate, e.g. http://127.0.0.1:8081/hello
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   a long-term key of the user
  MFA_SERIAL, MFA_CODE                       the user's MFA device and a fresh code
"""
import os
import sys

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.httpsession import URLLib3Session

env = os.environ
sts = boto3.client(
    "sts",
    endpoint_url=env["STS_ENDPOINT"],
    region_name="us-east-1",
    aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
    aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
)
session = sts.get_session_token(
    SerialNumber=env["MFA_SERIAL"], TokenCode=env["MFA_CODE"], DurationSeconds=3600
)["Credentials"]
print("MFA session", session["AccessKeyId"], "until", session["Expiration"])

creds = Credentials(session["AccessKeyId"], session["SecretAccessKey"], session["SessionToken"])
body = b'{"order": 42}'
request = AWSRequest(
    method="POST",
    url=env["GATED_URL"],
    data=body,
    headers={"Content-Type": "application/json"},
)
SigV4Auth(creds, "execute-api", "us-east-1").add_auth(request)
response = URLLib3Session().send(request.prepare())
print(response.status_code)
print(response.text)
sys.exit(0 if response.status_code < 300 else 1)
