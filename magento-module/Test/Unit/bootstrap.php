<?php

/**
 * Bootstrap for the module's unit tests, which run without a Magento installation: the module's
 * own classes load through a PSR-4 autoloader, and the few framework classes a test touches are
 * small stand-ins under _files/.
 */

declare(strict_types=1);

spl_autoload_register(static function (string $class): void {
    $prefix = 'Tillbridge\\PosSync\\';
    if (strncmp($class, $prefix, strlen($prefix)) !== 0) {
        return;
    }
    $file = dirname(__DIR__, 2) . '/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
    if (is_file($file)) {
        require $file;
    }
});

require __DIR__ . '/_files/ComponentRegistrar.php';
