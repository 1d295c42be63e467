#!/bin/sh
# Makes random secrets for docker/compose.yaml in docker/secrets/. An existing file is kept: run it again
# safely. Never commit docker/secrets/.
# Compose mounts each file as it is (it ignores a secret's uid and mode outside Swarm), and the containers
# read them as unprivileged users (Muster as uid 10001, coturn as nobody): the files are 0644, the folder
# 0700 so that no other user of this host can read them.
set -eu
cd "$(dirname "$0")"
mkdir -p secrets
chmod 700 secrets
umask 022

random() { python3 -c 'import secrets; print(secrets.token_urlsafe(48))'; }
make() { [ -s "secrets/$1" ] || { printf '%s\n' "$2" > "secrets/$1"; echo "made secrets/$1"; }; }

make jwt_secret "$(random)"
make turn_secret "$(random)"
make mongo_root_password "$(random)"
# MongoDB's replica-set key file: base64, 6 to 1024 characters.
make mongo_keyfile "$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(756)).decode())')"
make muster_mongo_url "mongodb://muster:$(random)@mongo1:27017,mongo2:27017,mongo3:27017/muster?replicaSet=rs0&authSource=muster&w=majority"
