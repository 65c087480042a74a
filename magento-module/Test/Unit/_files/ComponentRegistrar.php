<?php

/**
 * Test stand-in for Magento's ComponentRegistrar (there is no Magento framework in the unit-test
 * environment). Same public surface that registration.php and the tests use: register(),
 * getPaths(), getPath(), and the component-type constants. Like Magento's, registering the same
 * component twice is an error.
 */

declare(strict_types=1);

namespace Magento\Framework\Component;

final class ComponentRegistrar
{
    public const MODULE = 'module';
    public const LIBRARY = 'library';
    public const THEME = 'theme';
    public const LANGUAGE = 'language';
    public const SETUP = 'setup';

    /** @var array<string, array<string, string>> */
    private static array $paths = [
        self::MODULE => [],
        self::LIBRARY => [],
        self::THEME => [],
        self::LANGUAGE => [],
        self::SETUP => [],
    ];

    public static function register(string $type, string $componentName, string $path): void
    {
        if (!array_key_exists($type, self::$paths)) {
            throw new \LogicException("'{$type}' is not a valid component type");
        }
        if (isset(self::$paths[$type][$componentName])) {
            throw new \LogicException(
                "'{$componentName}' component already exists ('" . self::$paths[$type][$componentName] . "')"
            );
        }
        self::$paths[$type][$componentName] = str_replace('\\', '/', $path);
    }

    /** @return array<string, string> */
    public static function getPaths(string $type): array
    {
        return self::$paths[$type] ?? [];
    }

    public static function getPath(string $type, string $componentName): ?string
    {
        return self::$paths[$type][$componentName] ?? null;
    }
}
