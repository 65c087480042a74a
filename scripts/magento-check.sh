#!/usr/bin/env bash
# Checks of the Magento module (magento-module/), offline and without a Magento installation:
#   1. php -l on every PHP file
#   2. phpcs --standard=PSR12 on every PHP file
#   3. composer.json is valid JSON
#   4. XSD validation of etc/*.xml (and etc/<area>/*.xml) with Magento 2.4.6-p1's schemas from
#      $TILLBRIDGE_SHARED_DIR/specs/magento-xsd (validate.sh resolves urn:magento:... through
#      its catalog, from any working directory)
#   5. PHPUnit (magento-module/phpunit.xml.dist)
# Called by scripts/test.sh; runs on its own too. Exit status is non-zero if any check fails;
# every check runs so one pass shows every problem.

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
module="$repo/magento-module"

if [ -z "${TILLBRIDGE_SHARED_DIR:-}" ]; then
  if [ -d "$repo/../shared" ]; then
    TILLBRIDGE_SHARED_DIR=$(cd "$repo/../shared" && pwd)
  else
    TILLBRIDGE_SHARED_DIR=/work/shared
  fi
fi
xsd="$TILLBRIDGE_SHARED_DIR/specs/magento-xsd"

for tool in php phpcs phpunit xmllint; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: $tool not found (scripts/test.sh installs it)" >&2
    exit 1
  fi
done
if [ ! -f "$xsd/validate.sh" ]; then
  echo "error: $xsd/validate.sh not found; set TILLBRIDGE_SHARED_DIR to the shared/ folder" >&2
  exit 1
fi

cd "$module"
failed=()

mapfile -t php_files < <(find . -name '*.php' -not -path './vendor/*' | sed 's|^\./||' | sort)
shopt -s nullglob
xml_files=(etc/*.xml etc/*/*.xml)
shopt -u nullglob
if [ ${#php_files[@]} -eq 0 ] || [ ${#xml_files[@]} -eq 0 ]; then
  echo "error: no PHP or no etc/ XML files found in $module" >&2
  exit 1
fi

echo "-- php -l (${#php_files[@]} files)"
lint_ok=1
for f in "${php_files[@]}"; do
  if ! out=$(php -l "$f" 2>&1); then
    echo "$out"
    lint_ok=0
  fi
done
[ $lint_ok -eq 1 ] || failed+=("php -l")

echo "-- phpcs --standard=PSR12"
phpcs -q --standard=PSR12 --report=full "${php_files[@]}" || failed+=("phpcs")

echo "-- composer.json"
php -r 'json_decode(file_get_contents("composer.json"), false, 512, JSON_THROW_ON_ERROR);' \
  || failed+=("composer.json")

echo "-- XSD validation (${xml_files[*]})"
sh "$xsd/validate.sh" "${xml_files[@]}" || failed+=("xsd")

echo "-- phpunit"
phpunit -c phpunit.xml.dist || failed+=("phpunit")

if [ ${#failed[@]} -gt 0 ]; then
  echo "magento-module: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "magento-module: all checks passed"
